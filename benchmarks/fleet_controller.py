#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the rollout costs the Ansible controller per host, measured without
nodes (docs/fleet.md, "Scale").

  play1   play 1 of playbooks/site.yml (the inventory checks; it connects to
          no node) on inventories of --hosts host names, for the working tree
          and for --before REV side by side, --rounds times, alternating;
  tasks   --task-hosts (100) local hosts (connection: local): an empty play, 10 controller-
          only tasks (debug), 3 skipped tasks, 3 module runs (command); the
          CPU per task and host, and the main process's share (the
          task_timing callback of lab/fleet/scale).

  python3 benchmarks/fleet_controller.py [--hosts 100,300] [--before REV]
          [--rounds 2] [--forks 50] [--only play1|tasks] [--json OUT]

CPU is user+sys of ansible-playbook and its children (resource.RUSAGE_CHILDREN).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "lab", "fleet", "scale"))
import scale_bench  # noqa: E402  pylint: disable=wrong-import-position

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
CALLBACKS = os.path.join(REPO, "lab", "fleet", "scale", "callback_plugins")


def timed(argv, env, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(argv), proc.stdout[-3000:]))
    return round(wall, 2), round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)


def first_play(path):
    with open(path) as handle:
        text = handle.read()
    start = text.index("\n- name:") + 1
    return "---\n" + text[start:text.index("\n- name:", start) + 1]


def bench_play1(args, work):
    trees = {"after": scale_bench.snapshot(os.path.join(work, "after"))}
    if args.before:
        trees["before"] = scale_bench.snapshot(os.path.join(work, "before"), args.before)
    for label, tree in trees.items():
        with open(os.path.join(work, "play1-%s.yml" % label), "w") as handle:
            handle.write(first_play(os.path.join(tree, "ansible_collections", "hpc", "slurm_adopt",
                                                 "playbooks", "site.yml")))
    os.makedirs(os.path.join(work, "group_vars"), exist_ok=True)
    with open(os.path.join(work, "group_vars", "all.yml"), "w") as handle:
        handle.write("slurm_adopt_compute_group: hpc_compute\nslurm_adopt_controller_group: hpc_controller\n")
    rows = []
    for hosts in [int(h) for h in args.hosts.split(",")]:
        inventory = os.path.join(work, "inv-%d.yml" % hosts)
        with open(inventory, "w") as handle:
            handle.write("all:\n  children:\n    hpc_controller:\n      hosts:\n        ctl:\n"
                         "    hpc_compute:\n      hosts:\n")
            handle.writelines("        node%05d:\n" % i for i in range(1, hosts + 1))
        for rnd in range(args.rounds):
            for label in sorted(trees, reverse=True):     # before, after
                env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=trees[label], ANSIBLE_FORKS=str(args.forks),
                           ANSIBLE_NOCOLOR="1")
                wall, cpu = timed([ANSIBLE_PLAYBOOK, "-i", inventory, os.path.join(work, "play1-%s.yml" % label)],
                                  env, work)
                row = {"bench": "play1", "label": label, "hosts": hosts, "round": rnd, "wall": wall, "cpu": cpu,
                       "cpu_per_host": round(cpu / hosts, 3), "load": os.getloadavg()[0]}
                rows.append(row)
                print("play1 %-6s hosts=%-5d wall %7.1f s  cpu %7.1f s  (%.3f s/host)  load %.1f"
                      % (label, hosts, wall, cpu, row["cpu_per_host"], row["load"]), flush=True)
    return rows


TASK_PLAYS = {
    "empty": [],
    "debug": ['{ansible.builtin.debug: {msg: "{{ inventory_hostname }}"}}'] * 10,
    "skip": ['{ansible.builtin.command: "true", when: false}'] * 3,
    "command": ['{ansible.builtin.command: "true", changed_when: false}'] * 3,
}


def bench_tasks(args, work):
    hosts = args.task_hosts
    inventory = os.path.join(work, "local.yml")
    with open(inventory, "w") as handle:
        handle.write("all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: %s\n  hosts:\n"
                     % sys.executable)
        handle.writelines("    h%03d:\n" % i for i in range(1, hosts + 1))
    rows, base = [], None
    for name, tasks in TASK_PLAYS.items():
        play = os.path.join(work, "tasks-%s.yml" % name)
        with open(play, "w") as handle:
            handle.write("- hosts: all\n  gather_facts: false\n  tasks:%s\n"
                         % ("".join("\n    - " + t for t in tasks) if tasks else " []"))
        raw = os.path.join(work, "tasks-%s.json" % name)
        env = dict(os.environ, ANSIBLE_FORKS=str(args.forks), ANSIBLE_PIPELINING="True", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_CALLBACK_PLUGINS=CALLBACKS, ANSIBLE_CALLBACKS_ENABLED="task_timing",
                   TASK_TIMING_JSON=raw)
        wall, cpu = timed([ANSIBLE_PLAYBOOK, "-i", inventory, play], env, work)
        with open(raw) as handle:
            main = json.load(handle)["main_cpu"]
        if name == "empty":
            base = (cpu, main)
            per, main_per = None, None
        else:
            runs = hosts * len(tasks)
            per, main_per = round((cpu - base[0]) / runs, 3), round((main - base[1]) / runs, 4)
        rows.append({"bench": "tasks", "play": name, "hosts": hosts, "tasks": len(tasks), "wall": wall, "cpu": cpu,
                     "main_cpu": main, "cpu_per_task_host": per, "main_cpu_per_task_host": main_per,
                     "load": os.getloadavg()[0]})
        print("tasks %-8s wall %6.1f s  cpu %6.1f s  main %5.1f s  per task and host: cpu %s s, main %s s  load %.1f"
              % (name, wall, cpu, main, per, main_per, os.getloadavg()[0]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="100,300")
    parser.add_argument("--before", default=None, help="git revision to compare play 1 with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--task-hosts", type=int, default=100)
    parser.add_argument("--only", choices=["play1", "tasks"], default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="saf-fleet-controller.")
    try:
        rows = []
        if args.only in (None, "play1"):
            rows += bench_play1(args, work)
        if args.only in (None, "tasks"):
            rows += bench_tasks(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"cpus": os.cpu_count(), "rows": rows}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
