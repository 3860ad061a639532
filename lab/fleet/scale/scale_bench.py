#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The scale measurements of the fleet lab (lab/fleet/scale.sh drives this).

  scale_bench.py run --state DIR --n N --results DIR [--label L] [--ref REV]
                     [--phases site1,site2,health] [--forks F] [--pipelining on|off]
                     [--env KEY=VALUE ...] [--extra ARG ...]
      runs the collection's playbooks against the scale lab that is up
      (lab/fleet/scale.sh up N): site.yml on fresh nodes (site1), site.yml
      again, which must change nothing (site2), healthcheck.yml (health),
      each with the task_timing callback; writes one summary per run to
      RESULTS/<label>-n<N>-<phase>[-<k>].json (the callback's raw file next
      to it, the playbook's output in .log).  Exit status 1 when a playbook
      failed or the second run changed something.

  scale_bench.py report --results DIR --json OUT --md OUT
      one JSON and a markdown table from every summary in DIR.

The collection deployed is a snapshot: of the working tree (default), or of
a git revision (--ref), so that "before" and "after" of a tuning run side by
side on the same lab with the same driver.
"""

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VENV_BIN = os.path.join(REPO, ".venv", "bin")
CALLBACKS = os.path.join(HERE, "callback_plugins")
# Playbook files of the collection that are not shipped in the snapshot
SKIP = ("lab/", "benchmarks/", "tests/node/", "tests/unit/", "tests/corpus/", "tests/fleet/")
# Actions that run on the controller only (no connection to the node)
LOCAL_ACTIONS = {
    "include_role", "include_tasks", "import_role", "import_tasks", "set_fact", "assert", "debug",
    "fail", "group_by", "add_host", "meta", "set_stats",
}


# ---------------------------------------------------------------- snapshot
def snapshot(dest, ref=None):
    """The collection as ansible_collections/hpc/slurm_adopt below dest: the
    working tree (tracked and untracked, not ignored), or git revision ref."""
    coll = os.path.join(dest, "ansible_collections", "hpc", "slurm_adopt")
    os.makedirs(coll)
    if ref:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO,
                                 stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["tar", "-x", "-C", coll], input=archive, check=True)
        for name in SKIP:
            shutil.rmtree(os.path.join(coll, name), ignore_errors=True)
        return dest
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, stdout=subprocess.PIPE, check=True).stdout.split(b"\0")
    for raw in names:
        name = raw.decode()
        if not name or name.startswith(SKIP) or not os.path.isfile(os.path.join(REPO, name)):
            continue
        target = os.path.join(coll, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), target)
    return dest


# ---------------------------------------------------------------- one run
def loadavg():
    with open("/proc/loadavg") as handle:
        return [float(x) for x in handle.read().split()[:3]]


def container_cpu(label="slurm-adopt-lab=scale"):
    """{container name: CPU seconds used so far} of the lab's containers, from
    their cpuacct cgroups (cgroup v1, podman's libpod_parent layout); {} when
    that layout is not there."""
    out = subprocess.run(["podman", "ps", "--no-trunc", "--filter", "label=" + label,
                          "--format", "{{.ID}} {{.Names}}"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=False).stdout
    usage = {}
    for line in out.splitlines():
        cid, _, name = line.partition(" ")
        for pattern in ("/sys/fs/cgroup/cpuacct/libpod_parent/libpod-%s/cpuacct.usage",
                        "/sys/fs/cgroup/cpuacct/machine.slice/libpod-%s.scope/cpuacct.usage"):
            try:
                with open(pattern % cid) as handle:
                    usage[name] = int(handle.read()) / 1e9
                break
            except OSError:
                continue
    return usage


def run_playbook(args, collections, playbook, tag, extra):
    """ansible-playbook with the timing callback; returns the summary."""
    raw = os.path.join(args.results, tag + ".timing.json")
    log = os.path.join(args.results, tag + ".log")
    inventory = os.path.join(args.state, "inventory.yml")
    forks = args.forks or max(5, args.n)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections,
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_TIMEOUT": "60",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_PIPELINING": "True" if args.pipelining == "on" else "False",
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "task_timing",
        "TASK_TIMING_JSON": raw,
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory,
            "hpc.slurm_adopt." + playbook] + extra + list(args.extra)
    load_before = loadavg()
    nodes_before = container_cpu()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    with open(log, "w") as out:
        out.write("$ %s\n" % " ".join(argv))
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=args.results,
                              check=False)
    wall = time.time() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    nodes_after = container_cpu()
    node_cpu = {name: round(nodes_after[name] - nodes_before[name], 2)
                for name in nodes_after if name in nodes_before}
    summary = summarize(raw) if os.path.exists(raw) else {}
    summary.update({
        "n": args.n, "label": args.label, "playbook": playbook, "tag": tag, "rc": proc.returncode,
        "wall": round(wall, 2),
        "controller_cpu": round((cpu_after.ru_utime - cpu_before.ru_utime)
                                + (cpu_after.ru_stime - cpu_before.ru_stime), 2),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "container_cpu": node_cpu,
        "compute_cpu_per_node": round(statistics.median([v for k, v in node_cpu.items() if "-node" in k]), 2)
        if any("-node" in k for k in node_cpu) else None,
        "forks": forks, "pipelining": args.pipelining, "env": args.env, "extra": extra + list(args.extra),
        "ref": args.ref or "working tree", "log": os.path.relpath(log, args.results),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    })
    with open(os.path.join(args.results, tag + ".json"), "w") as handle:
        json.dump(summary, handle, indent=1, sort_keys=True)
    return summary


def _stats(values):
    if not values:
        return None
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


# The plays of site.yml and healthcheck.yml that work on the compute nodes (in batches)
NODE_PLAYS = ("Roll pam_slurm_adopt out", "Check pam_slurm_adopt on every compute node")
COMPUTE_PREFIX = "saf-scale-node"   # the compute nodes' inventory names (lab/fleet/scale.sh)


def summarize(raw_path, compute_prefix=COMPUTE_PREFIX):
    """Batches, per-node task counts and times, top tasks, from the callback's file."""
    with open(raw_path) as handle:
        raw = json.load(handle)
    compute = sorted({e["host"] for e in raw["events"] if e["host"].startswith(compute_prefix)})
    plays = raw["plays"]
    batches = []
    for index, play in enumerate(plays):
        hosts = sorted({e["host"] for e in raw["events"] if e["play"] == index})
        batches.append({"play": play["name"], "hosts": len(hosts),
                        "compute_hosts": len([h for h in hosts if h in compute]),
                        "seconds": round(play["ended"] - play["started"], 2)})
    per_node = {}
    for host in compute:
        events = [e for e in raw["events"] if e["host"] == host]
        ran = [e for e in events if e["status"] != "skipped"]
        remote = [e for e in ran if e["action"].rsplit(".", 1)[-1] not in LOCAL_ACTIONS]
        per_node[host] = {
            "tasks": len(ran),
            "remote_tasks": len(remote),
            "skipped": len(events) - len(ran),
            "task_seconds": round(sum(e["ended"] - e["started"] for e in ran), 2),
            "remote_task_seconds": round(sum(e["ended"] - e["started"] for e in remote), 2),
        }
    by_task = {}
    for e in raw["events"]:
        if e["host"] in compute and e["status"] != "skipped":
            by_task.setdefault((e["task"], e["action"]), []).append(e["ended"] - e["started"])
    top = sorted(({"task": name, "action": action, "runs": len(times),
                   "median": round(statistics.median(times), 3), "total": round(sum(times), 2)}
                  for (name, action), times in by_task.items()), key=lambda t: -t["total"])[:15]
    stats = raw["stats"]
    return {
        "playbook_seconds": round(raw["ended"] - raw["started"], 2),
        "controller_main_cpu": raw.get("main_cpu"),
        "batches": batches,
        "compute_nodes": len(compute),
        "node": {key: _stats([v[key] for v in per_node.values()])
                 for key in ("tasks", "remote_tasks", "skipped", "task_seconds", "remote_task_seconds")},
        "per_node": per_node,
        "top_tasks": top,
        "changed": sum(s["changed"] for s in stats.values()),
        "changed_hosts": sorted(h for h, s in stats.items() if s["changed"]),
        "failed": sum(s["failures"] + s["unreachable"] for s in stats.values()),
        "changed_tasks": sorted({"%s: %s" % (e["host"], e["task"]) for e in raw["events"]
                                 if e["status"] == "changed"}),
    }


def cmd_run(args):
    os.makedirs(args.results, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="saf-scale-coll.")
    ok = True
    try:
        collections = snapshot(tmp, args.ref)
        counts = {}
        for phase in args.phases.split(","):
            counts[phase] = counts.get(phase, 0) + 1
            tag = "%s-n%d-%s" % (args.label, args.n, phase)
            if counts[phase] > 1:
                tag += "-%d" % counts[phase]
            playbook = "healthcheck" if phase.startswith("health") else "site"
            extra = []
            if playbook == "healthcheck":
                extra = ["-e", "slurm_adopt_health_json=%s" % os.path.join(args.results, tag + ".health.json")]
            s = run_playbook(args, collections, playbook, tag, extra)
            verdict = "ok"
            if s["rc"] != 0:
                verdict, ok = "FAILED (rc %d, %s)" % (s["rc"], s["log"]), False
            elif phase.startswith("site2") and s.get("changed", 1) != 0:
                verdict, ok = "CHANGED %s" % s.get("changed_tasks"), False
            print("scale: n=%d %-8s %-10s %7.1fs  cpu %6.1fs  changed=%s  %s"
                  % (args.n, args.label, phase, s["wall"], s["controller_cpu"], s.get("changed"), verdict),
                  flush=True)
            if s["rc"] != 0 and phase.startswith("site1"):
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


# ---------------------------------------------------------------- report
def cmd_report(args):
    runs = []
    for path in sorted(glob.glob(os.path.join(args.results, "*.json"))):
        if path.endswith((".timing.json", ".health.json")):
            continue
        with open(path) as handle:
            data = json.load(handle)
        if "tag" in data:
            data.pop("per_node", None)
            runs.append(data)
    runs.sort(key=lambda r: (r["label"], r["n"], r["when"]))
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release,
               "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)}
    with open(args.json, "w") as handle:
        json.dump({"machine": machine, "runs": runs}, handle, indent=1, sort_keys=True)
    lines = ["# Fleet scale measurements (lab/fleet/scale.sh)", "",
             "Machine: %(cpus)d CPUs, %(memory_gb)s GB, kernel %(kernel)s; the controller (ansible-playbook) and "
             "every node container share these CPUs." % machine, "",
             "| label | N | playbook | phase | wall s | batches (hosts: s) | tasks/node run (remote) | skipped/node "
             "| task s/node (median) | s/node | controller CPU s | node CPU s/node | changed | forks | pipelining "
             "| load before |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        node = r.get("node") or {}
        phase = r["tag"].split("-n%d-" % r["n"], 1)[-1]
        batches = ", ".join("%d: %.0f" % (b["compute_hosts"], b["seconds"]) for b in r.get("batches", [])
                            if b["play"].startswith(NODE_PLAYS))
        lines.append("| %s | %d | %s | %s | %.1f | %s | %s (%s) | %s | %s | %.2f | %.1f | %s | %s | %d | %s | %.1f |" % (
            r["label"], r["n"], r["playbook"], phase, r["wall"], batches,
            _m(node.get("tasks")), _m(node.get("remote_tasks")), _m(node.get("skipped")),
            _m(node.get("task_seconds")), r["wall"] / max(1, r["n"]), r["controller_cpu"],
            "-" if r.get("compute_cpu_per_node") is None else "%.2f" % r["compute_cpu_per_node"],
            r.get("changed", "?"), r["forks"], r["pipelining"], r["loadavg_before"][0]))
    lines += ["", "Columns: *wall* around ansible-playbook; *batches*: the compute hosts of each batch of the "
              "play that works on the compute nodes (site.yml: the rollout, in its batches; healthcheck.yml: the checks) "
              "and its seconds; *tasks/node*: tasks that ran on a compute "
              "node (not skipped), in brackets those that connect to it; *task s/node*: the sum of one node's "
              "task durations (median over the nodes); *s/node*: wall / N; *controller CPU*: user+sys of "
              "ansible-playbook and its children; *node CPU*: CPU seconds one compute node's container used during the "
              "run (median; its cpuacct cgroup); *load before*: 1-minute load average when the run started.", ""]
    for r in runs:
        if r.get("top_tasks") and r["playbook"] in ("site", "healthcheck"):
            lines.append("### %s, N=%d, %s: tasks by total time over the compute nodes" % (r["label"], r["n"], r["tag"]))
            lines.append("")
            lines.append("| task | action | runs | median s | total s |")
            lines.append("|---|---|---|---|---|")
            for t in r["top_tasks"][:8]:
                lines.append("| %s | %s | %d | %.2f | %.1f |" % (
                    t["task"].replace("|", "/"), t["action"], t["runs"], t["median"], t["total"]))
            lines.append("")
    with open(args.md, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("scale: %d runs -> %s, %s" % (len(runs), args.json, args.md))
    return 0


# ---------------------------------------------------------------- projection
# play 1's controller CPU per host (inventories of 100 to 1,000 hosts; docs/fleet.md, "Scale")
PLAY1_CPU_PER_HOST = 0.052


def project(run, nodes, forks, canary, batch_pct, cores, main=2.0):
    """Hours a site.yml run over `nodes` would take, from one measured first
    run (the scale lab's N nodes, canary 1 then the rest):

      L  one node's chain alone (the canary batch of the measured run);
      c  the controller's CPU per node over the whole run (ansible-playbook and
         its children: workers, ssh);
    and a batch of b nodes takes max(L * ceil(b / forks), c * b / cores,
    main * b): as long as one wave of `forks` nodes is the bound, waves follow
    each other; once the controller's CPU is, its cores are; and ansible-
    playbook's main process handles every result of every host in one Python
    process (`main`: its CPU per node, which no core count shortens).  The nodes' own work runs on
    their own CPUs.  The plays outside the batches (play 2 on every Slurm host
    at once, the login/controller check, HealthCheckProgram) take their
    measured time once per wave of forks; play 1 its CPU per host
    (PLAY1_CPU_PER_HOST)."""
    canary_s = [b["seconds"] for b in run["batches"] if b["play"].startswith(NODE_PLAYS)][0]
    c = run["controller_cpu"] / run["n"]
    rollout = sum(b["seconds"] for b in run["batches"] if b["play"].startswith(NODE_PLAYS))
    other_s = run["playbook_seconds"] - rollout           # plays 1, 2, 4-6 of the measured run
    sizes = [min(canary, nodes)]
    size = max(1, int(nodes * batch_pct / 100.0))
    while sum(sizes) < nodes:
        sizes.append(min(size, nodes - sum(sizes)))
    total = 0.0
    for b in sizes:
        total += max(canary_s * -(-b // forks), c * b / cores, main * b)
    # the other plays: their measured time (N nodes, one wave) once per wave of forks
    total += other_s * -(-nodes // forks)
    # play 1 runs once, in one process: its CPU per host, measured on 100-1,000
    # hosts of an inventory (docs/fleet.md, "Scale")
    total += PLAY1_CPU_PER_HOST * nodes
    return {"nodes": nodes, "forks": forks, "batches": len(sizes), "batch": size, "cores": cores,
            "hours": round(total / 3600.0, 2), "L": round(canary_s, 1), "c": round(c, 2)}


def cmd_project(args):
    """The projection table, from a measured first run (--json) or from given
    L, c and other-plays seconds (--L, --c, --other: several c for columns)."""
    if args.json:
        with open(args.json) as handle:
            runs = json.load(handle)["runs"]
        picks = [r for r in runs if r["label"] == args.label and r["n"] == args.n and r["tag"].endswith("-site1")]
        if not picks:
            print("scale: no site1 run with label %s and N=%d in %s" % (args.label, args.n, args.json))
            return 1
        models = [picks[-1]]
    else:
        models = [{"n": 1, "controller_cpu": c, "playbook_seconds": args.L + args.other,
                   "batches": [{"play": NODE_PLAYS[0], "seconds": args.L}]} for c in args.c]
    head = " | ".join("hours, c = %.0f s" % (m["controller_cpu"] / m["n"]) for m in models)
    main = args.main
    print("| nodes | forks | batches (size) | controller cores | %s |" % head)
    print("|---|---|---|---|%s" % ("---|" * len(models)))
    for nodes in (1000, 10000):
        for forks, pct, cores in ((5, 25, 4), (50, 25, 16), (100, 10, 16), (250, 10, 32), (500, 10, 64)):
            cells = [project(m, nodes, forks, 1, pct, cores, main) for m in models]
            print("| %d | %d | %d (%d) | %d | %s |" % (
                nodes, forks, cells[0]["batches"], cells[0]["batch"], cores,
                " | ".join("%.1f" % p["hours"] for p in cells)))
    print("\nL = %.0f s (one node alone), main process %.1f s per node" % (project(models[0], 1, 1, 1, 100, 1)["L"], main))
    return 0


def _m(stat):
    return "-" if not stat else ("%g" % stat["median"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--state", required=True)
    run.add_argument("--n", type=int, required=True)
    run.add_argument("--results", required=True)
    run.add_argument("--label", default="base")
    run.add_argument("--ref", default=None, help="git revision to deploy (default: the working tree)")
    run.add_argument("--phases", default="site1,site2,health")
    run.add_argument("--forks", type=int, default=0, help="default: max(5, N)")
    run.add_argument("--pipelining", choices=["on", "off"], default="on")
    run.add_argument("--env", action="append", default=[], help="KEY=VALUE for ansible-playbook")
    run.add_argument("--extra", action="append", default=[], help="one more ansible-playbook argument")
    rep = sub.add_parser("report")
    rep.add_argument("--results", required=True)
    rep.add_argument("--json", required=True)
    rep.add_argument("--md", required=True)
    pro = sub.add_parser("project")
    pro.add_argument("--json", help="benchmarks/fleet_scale.json (or give --L, --c, --other)")
    pro.add_argument("--L", type=float, default=60.0, help="one node's chain alone, s")
    pro.add_argument("--c", type=float, action="append", default=None, help="controller CPU per node, s")
    pro.add_argument("--other", type=float, default=30.0, help="the plays outside the batches, s")
    pro.add_argument("--main", type=float, default=2.0, help="ansible-playbook's main process CPU per node, s")
    pro.add_argument("--label", default="tuned")
    pro.add_argument("--n", type=int, default=16)
    args = parser.parse_args(argv)
    if args.cmd == "project":
        args.c = args.c or [20.0]
        return cmd_project(args)
    if args.cmd == "run":
        args.results = os.path.abspath(args.results)
        args.state = os.path.abspath(args.state)
        return cmd_run(args)
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
