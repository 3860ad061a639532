#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Login cost of the adopt modules, measured on a running test lab.

Times complete ssh logins (``ssh ... true``, key auth, to 127.0.0.1) against
the lab's sshds, which differ only in their PAM account stack:

* ``plain``    no adopt module (the baseline);
* ``c``        SchedMD's C pam_slurm_adopt;
* ``py``       this collection's Python module under pam_python;
* ``floor``    pam_python with a module that only returns PAM_SUCCESS (what
  pam_python itself costs; the host lab has it);
* ``svc``      the C client (roles/adopt_module/files/client) asking the
  adoption service (slurm_adopt_service.py serve), set up by service_lab.py;
* ``svcchild`` the same client with no service to ask: every login runs the
  fallback child (python3 -I -S slurm_adopt_service.py child).

Cases (each with its own jobs, submitted here and cancelled at the end):

* ``one_job``   alice has one job;
* ``two_jobs``  bob has two: the callerid RPC (from outside any job it cannot
  tell), then the "newest" rule;
* ``crowd``     alice has one job among 100 jobs of other users on the node
  (the partition is made to oversubscribe for the case, then restored);
* ``silent``    alice has one job, and 3 jobs of another user have their
  extern slurmstepd stopped (SIGSTOP). The C module has no timeout there: its
  logins hang until sshd's LoginGraceTime; they are tried a few times apart
  (``--silent-c-logins``) and reported, not averaged.

Within a case the kinds take turns round-robin, the order rotating every
round. Per kind: wall time and CPU time of the kind's sshd process tree per
login (a cgroup v1 cpuacct group per sshd listener), the service's own CPU
(its own cpuacct group), medians, and the cost added over plain per round
with bootstrap 95 % confidence intervals.

Then, with alice's one job: ``throughput`` (50 concurrent logins per kind,
all of which must land in the job; batches interleaved between kinds) and
``memory`` (10 concurrent open sessions per kind: memory of the kind's sshd
processes per session, and the service's own).

Not a test: a measurement that refuses to report broken logins (exit 1),
a disturbed lab (exit 3) or a lab that is not up (exit 2).

Usage::

    python3 benchmarks/login_latency.py [--lab host] [--logins 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import labctl  # noqa: E402  pylint: disable=wrong-import-position
import service_lab  # noqa: E402  pylint: disable=wrong-import-position

KINDS = ("plain", "c", "py", "floor", "svc", "svcchild")
ADOPTING = ("c", "py", "svc", "svcchild")
CASES = ("one_job", "two_jobs", "crowd", "silent")
SSH_TIMEOUT = 60.0


class Disturbed(Exception):
    """Someone else changed the lab under the benchmark (jobs, PAM lines)."""


class Broken(Exception):
    """A login failed or landed in the wrong place, with the lab undisturbed."""


class Busy(Exception):
    """The lab did not become usable for a case within --settle seconds."""


# --------------------------------------------------------------------------- statistics

def percentile(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def bootstrap_ci(values, stat=statistics.median, n=2000, level=0.95, seed=1):
    """Percentile-bootstrap confidence interval of stat(values) (fixed seed:
    the same samples always give the same interval)."""
    rng = random.Random(seed)
    k = len(values)
    stats = sorted(stat([values[rng.randrange(k)] for _i in range(k)]) for _j in range(n))
    return [stats[int((1 - level) / 2 * n)], stats[min(n - 1, int((1 + level) / 2 * n))]]


def paired(xs, ys):
    """Median of the per-round differences xs - ys, with its 95 % CI."""
    diffs = [x - y for x, y in zip(xs, ys)]
    return {"median_ms": statistics.median(diffs), "ci95_ms": bootstrap_ci(diffs),
            "below_zero": sum(1 for d in diffs if d < 0), "rounds": len(diffs)}


def summarize(samples):
    """Per kind: median, p90, min, max, added over plain (difference of
    medians and per round with a CI); pairwise comparisons that matter."""
    out = {}
    for kind, xs in samples.items():
        out[kind] = {"n": len(xs), "median_ms": statistics.median(xs), "p90_ms": percentile(xs, 90),
                     "min_ms": min(xs), "max_ms": max(xs)}
    if "plain" in samples:
        plain = out["plain"]["median_ms"]
        for kind, xs in samples.items():
            out[kind]["added_over_plain_ms"] = out[kind]["median_ms"] - plain
            if kind != "plain":
                p = paired(xs, samples["plain"])
                out[kind]["paired_added_ms"] = p["median_ms"]
                out[kind]["paired_added_ci95_ms"] = p["ci95_ms"]
    comparisons = {}
    for a, b in (("svc", "c"), ("svcchild", "c"), ("py", "c"), ("svc", "py"), ("py", "floor")):
        if a in samples and b in samples:
            comparisons["%s_minus_%s" % (a, b)] = paired(samples[a], samples[b])
    out["comparisons"] = comparisons
    return out


# --------------------------------------------------------------------------- CPU time

CPUACCT = "/sys/fs/cgroup/cpuacct"


class CpuAccounting(object):
    """CPU time of processes, from one cgroup v1 cpuacct group per name:
    each sshd listener (and so everything it forks: the per-login sshd, its
    PAM modules, the fallback child, the session's `true`) and the adoption
    service. Slurm moves an adopted sshd into the job's freezer and memory
    groups, never into cpuacct, so a whole login stays accounted. Not in it:
    slurmstepd, slurmd and munged (both modules cause that work alike).
    Everything is moved back at the end."""

    def __init__(self, pids):
        self.root = os.path.join(CPUACCT, "slurm-adopt-bench-%d" % os.getpid())
        self.pids = dict(pids)
        self.original = {}
        os.mkdir(self.root)
        try:
            for name, pid in self.pids.items():
                self.original[name] = self._cgroup_of(pid)
                os.mkdir(os.path.join(self.root, name))
                self._move(pid, os.path.join(self.root, name))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _move(pid, group):
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write("%d\n" % pid)

    @staticmethod
    def _cgroup_of(pid):
        with open("/proc/%d/cgroup" % pid) as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if "cpuacct" in parts[1].split(","):
                    return parts[2]
        return "/"

    def usage_ns(self):
        out = {}
        for name in self.pids:
            with open(os.path.join(self.root, name, "cpuacct.usage")) as f:
                out[name] = int(f.read())
        return out

    def intact(self):
        """Every process is still in its group (nothing restarted meanwhile)."""
        try:
            return all(self._cgroup_of(pid) == "/" + os.path.relpath(
                os.path.join(self.root, name), CPUACCT) for name, pid in self.pids.items())
        except OSError:
            return False

    def close(self):
        for name, pid in self.pids.items():
            back = os.path.join(CPUACCT, self.original.get(name, "/").lstrip("/"))
            try:
                self._move(pid, back)
            except OSError:
                pass
        for name in self.pids:
            path = os.path.join(self.root, name)
            for _attempt in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:       # sessions still exiting
                    time.sleep(0.1)
        try:
            os.rmdir(self.root)
        except OSError:
            pass


def listener_pid(port):
    out = subprocess.run(["ss", "-Hltnp", "sport = :%d" % port], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, timeout=10, check=False).stdout.decode()
    pids = sorted({int(x) for x in re.findall(r"pid=(\d+)", out)})
    if len(pids) != 1:
        raise OSError("cannot tell the sshd listening on port %d: %r" % (port, out))
    return pids[0]


# --------------------------------------------------------------------------- memory

def smaps(pid):
    """{Rss, Pss, Private} in kB of one process (smaps_rollup)."""
    out = {"Rss": 0, "Pss": 0, "Private": 0}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _sep, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                out["Private"] += int(rest.split()[0])
    return out


def descendants(pid):
    """Pids below pid (children, grandchildren, ...)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- the benchmark

class Bench:
    def __init__(self, lab, args):
        self.lab = lab
        self.args = args
        self.submitted = []          # every job id this run submitted
        self.log = []                # notes about disturbances and retries
        self.results = {}            # finished cases
        self.extra = {}              # throughput, memory, service
        self.lines = None            # adopt lines (c, py) in force for the current case
        self.kinds = [k for k in KINDS if k in lab.ports]
        self.cpu = None
        self.svc = None              # service_lab.ServiceLab
        self.stopped = []            # pids of slurmstepds this run stopped
        self.partition = None        # original OverSubscribe of the lab partition

    def note(self, msg):
        stamp = time.strftime("%H:%M:%S")
        self.log.append("%s %s" % (stamp, msg))
        print("  [%s] %s" % (stamp, msg), flush=True)

    # ---------------------------------------------------------------- lab state
    def current_lines(self):
        return tuple(self.lab.account_line(k) for k in ("c", "py"))

    def is_default(self, lines):
        """Lines are up.sh's default adopt lines (no extra options). The py
        module's path may differ from the state file's: reported."""
        for kind, line in zip(("c", "py"), lines):
            want = self.lab.default_account_line(kind).split()
            have = line.split()
            if kind == "py" and len(have) == len(want) and have[3].endswith("/pam_slurm_adopt.py"):
                have[3] = want[3]
            if have != want:
                return False
        return True

    def wait_clean(self, user):
        deadline = time.monotonic() + self.args.settle
        said = False
        while True:
            jobs = self.lab.jobs_of(user)
            lines = self.current_lines()
            lines_ok = self.is_default(lines)
            if not jobs and lines_ok:
                self.lines = lines
                return
            if time.monotonic() >= deadline:
                raise Busy("lab not usable after %ds: jobs of %s: %s; adopt lines %s"
                           % (self.args.settle, self.lab.user(user), jobs,
                              "default" if lines_ok else "not default: %r" % (lines,)))
            if not said:
                self.note("waiting for %s to have no jobs (%s) and default adopt lines (%s)"
                          % (self.lab.user(user), jobs, lines_ok))
                said = True
            time.sleep(0.5)

    def check_state(self, user, expected):
        """Raise Disturbed if user's jobs or the adopt lines are not as set up."""
        active = self.lab.jobs(user)
        running = {j["id"] for j in active if j["state"] == "RUNNING"
                   and os.path.exists(self.lab.extern_socket(j["id"]))}
        gone = sorted(set(expected) - running)
        extra = sorted({j["id"] for j in active} - set(expected))
        if gone or extra:
            raise Disturbed("jobs of %s changed: ours gone %s, foreign %s" % (user, gone, extra))
        lines = self.current_lines()
        if lines != self.lines:
            raise Disturbed("adopt lines changed from %r to %r" % (self.lines, lines))

    def submit(self, user, njobs):
        ids = []
        for i in range(njobs):
            if i:
                time.sleep(1.1)  # distinct start times: a well-defined "newest" job
            jid = self.lab.submit(user)
            self.submitted.append(jid)
            ids.append(jid)
        return ids

    def cancel_own(self):
        active = {j["id"] for j in self.lab.jobs()}
        mine = [j for j in self.submitted if j in active]
        if mine:
            self.lab.cancel(mine, timeout=120)

    # ---------------------------------------------------------------- background jobs
    def crowd_up(self, count):
        """count jobs of carol and dave, sharing the node's CPUs: the lab
        partition oversubscribes for the case (restored by crowd_down)."""
        out = self.lab.slurm("scontrol", "show", "partition", "lab")
        self.partition = re.search(r"OverSubscribe=(\S+)", out).group(1)
        self.lab.slurm("scontrol", "update", "PartitionName=lab", "OverSubscribe=FORCE:%d"
                       % (count // 8 + 2))
        ids = []
        for i in range(count):
            user = ("carol", "dave")[i % 2]
            out = self.lab.slurm("sbatch", "--parsable", "--job-name=bench-crowd", "--chdir=/tmp",
                                 "-o", "/dev/null", "-e", "/dev/null", "--mem=16",
                                 "--wrap=sleep 3600", user=user)
            jid = int(out.strip().split(";")[0])
            self.submitted.append(jid)
            ids.append(jid)
        deadline = time.monotonic() + 300
        while True:
            missing = [j for j in ids if not os.path.exists(self.lab.extern_socket(j))]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise Busy("%d of %d crowd jobs have no extern step after 300 s"
                           % (len(missing), count))
            time.sleep(1)
        self.note("crowd: %d jobs of other users running" % count)
        return ids

    def crowd_down(self):
        if self.partition is not None:
            self.lab.slurm("scontrol", "update", "PartitionName=lab",
                           "OverSubscribe=%s" % self.partition.split(":")[0], check=False)
            self.partition = None

    def silent_up(self, count):
        """count jobs of carol whose extern slurmstepd is stopped (SIGSTOP)."""
        ids = self.submit("carol", count)
        for jid in ids:
            pids = [int(line.split()[0]) for line in subprocess.run(
                ["ps", "-eo", "pid,args"], stdout=subprocess.PIPE, check=True).stdout.decode()
                .splitlines() if line.split(None, 1)[1:] == ["slurmstepd: [%d.extern]" % jid]]
            if len(pids) != 1:
                raise Busy("cannot tell the extern slurmstepd of job %d: %s" % (jid, pids))
            os.kill(pids[0], signal.SIGSTOP)
            self.stopped.append(pids[0])
        self.note("silent: extern slurmstepds of jobs %s stopped (pids %s)" % (ids, self.stopped))
        return ids

    def silent_down(self):
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped = []

    # ---------------------------------------------------------------- logins
    def timed_login(self, kind, user):
        argv = self.lab.ssh_argv(kind, user, "true", options=("-o", "LogLevel=ERROR"))
        t0 = time.perf_counter()
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=SSH_TIMEOUT, check=False)
            rc, err = p.returncode, p.stderr.decode("utf-8", "replace").strip()
        except subprocess.TimeoutExpired:
            rc, err = -1, "no answer within %ss" % SSH_TIMEOUT
        return (time.perf_counter() - t0) * 1000.0, rc, err

    def verify(self, kinds, user, expected, where):
        """Placement check through Lab.ssh (reads the session's cgroup)."""
        results = []
        for kind in kinds:
            r = self.lab.ssh(kind, user, "true", timeout=SSH_TIMEOUT)
            results.append({"kind": kind, "where": where, "rc": r.rc, "job": r.job_id,
                            "cgroup": r.job_cgroup})
            problem = None
            if r.rc != 0:
                problem = "login failed (rc %d): %s" % (r.rc, r.message)
            elif kind in ("plain", "floor"):
                if r.job_id is not None:
                    problem = "%s sshd session is in job %s" % (kind, r.job_id)
            elif r.job_id not in expected:
                problem = "session in job %s, expected one of %s" % (r.job_id, expected)
            if problem:
                self.check_state(user, expected)   # Disturbed wins over Broken
                raise Broken("%s %s (%s check): %s" % (kind, user, where, problem))
        return results

    def cpu_names(self):
        return list(self.cpu.pids) if self.cpu else []

    def run_case(self, name, user, njobs, kinds, logins):
        warm = self.args.warmup
        self.wait_clean(user)
        background = []
        try:
            if name == "crowd":
                background = self.crowd_up(self.args.crowd_jobs)
            elif name == "silent":
                background = self.silent_up(self.args.silent_stepds)
            expected = self.submit(user, njobs)
            print("case %s: %s with job(s) %s; kinds %s" % (
                name, self.lab.user(user), ", ".join(map(str, expected)), " ".join(kinds)),
                flush=True)
            return self._measure(name, user, expected, kinds, logins, warm, background)
        finally:
            self.silent_down()
            self.cancel_own()
            self.crowd_down()

    def _measure(self, name, user, expected, kinds, n, warm, background):
        self.check_state(user, expected)
        checks = self.verify(kinds, user, expected, "before")
        samples = {k: [] for k in kinds}
        cpu = {k: [] for k in self.cpu_names()}
        mid = warm + n // 2
        t_case = time.monotonic()
        for rnd in range(warm + n):
            shift = rnd % len(kinds)
            order = kinds[shift:] + kinds[:shift]
            round_fail, round_ms = [], {}
            cpu0 = self.cpu.usage_ns() if self.cpu else None
            for kind in order:
                dt, rc, err = self.timed_login(kind, user)
                if rc != 0:
                    round_fail.append({"kind": kind, "round": rnd, "rc": rc, "stderr": err})
                round_ms[kind] = dt
            self.check_state(user, expected)
            if self.cpu and rnd >= warm:
                cpu1 = self.cpu.usage_ns()
                for key in cpu:
                    cpu[key].append((cpu1[key] - cpu0[key]) / 1e6)
            if round_fail:
                if rnd >= warm:
                    raise Broken("measured login(s) failed with the lab undisturbed: %s"
                                 % round_fail)
                self.note("warmup login failure (not measured): %s" % round_fail)
            if rnd >= warm:
                for kind, dt in round_ms.items():
                    samples[kind].append(dt)
            if rnd == mid:
                checks += self.verify(kinds, user, expected, "middle")
        checks += self.verify(kinds, user, expected, "after")
        self.check_state(user, expected)
        elapsed = time.monotonic() - t_case
        res = {"user": self.lab.user(user), "jobs": expected, "background_jobs": len(background),
               "elapsed_s": elapsed, "kinds": list(kinds),
               "adopt_lines": {"c": self.lines[0], "py": self.lines[1]},
               "py_module": py_module_info(self.lines[1]),
               "stats": summarize(samples), "placement_checks": checks, "samples_ms": samples}
        if self.cpu:
            if not self.cpu.intact():
                self.note("a process left its cpuacct group during case %s: no CPU times" % name)
            else:
                measured = {k: v for k, v in cpu.items() if k in kinds}
                if "svc" in measured and "service" in cpu:
                    measured["svc+service"] = [a + b for a, b in zip(cpu["svc"], cpu["service"])]
                res["cpu"] = summarize(measured)
                if "svc+service" in measured and "c" in measured:
                    res["cpu"]["comparisons"]["svc+service_minus_c"] = paired(
                        measured["svc+service"], measured["c"])
                res["cpu"]["service_ms_per_round"] = statistics.median(cpu["service"]) \
                    if "service" in cpu else None
                res["cpu_samples_ms"] = cpu
        if name == "silent" and "c" not in kinds:
            res["c_hang"] = self.c_hang(user, expected)
        return res

    def c_hang(self, user, expected):
        """A few logins through the C module with stopped stepds on the node."""
        out = []
        for _i in range(self.args.silent_c_logins):
            dt, rc, err = self.timed_login("c", user)
            out.append({"ms": dt, "rc": rc, "stderr": err[-300:]})
            self.note("silent: C module login %d: rc %d after %.1f s" % (len(out), rc, dt / 1e3))
        self.check_state(user, expected)
        return out

    def run(self):
        for name in self.args.cases:
            user, njobs = {"one_job": ("alice", 1), "two_jobs": ("bob", 2),
                           "crowd": ("alice", 1), "silent": ("alice", 1)}[name]
            kinds = list(self.kinds)
            logins = self.args.logins
            if name == "silent":
                kinds = [k for k in kinds if k != "c"]
                logins = self.args.silent_logins
            for attempt in (1, 2):
                try:
                    res = self.run_case(name, user, njobs, kinds, logins)
                    res["attempt"] = attempt
                    self.results[name] = res
                    break
                except Disturbed as e:
                    self.note("case %s attempt %d disturbed by another lab user: %s"
                              % (name, attempt, e))
                    if attempt == 2:
                        raise
                    self.note("re-submitting and retrying case %s once" % name)
        if self.args.throughput:
            self.extra["throughput"] = self.throughput()
        if self.args.memory_sessions:
            self.extra["memory"] = self.memory()
        return self.results

    # ---------------------------------------------------------------- throughput
    def throughput(self):
        """--throughput concurrent logins of alice (one job) per kind, in
        batches that alternate between kinds; every login must land in the job."""
        n, batches = self.args.throughput, self.args.throughput_batches
        kinds = [k for k in self.kinds if k in ADOPTING]
        self.wait_clean("alice")
        try:
            expected = self.submit("alice", 1)
            out = {k: {"batch_s": [], "cpu_ms": [], "service_cpu_ms": []} for k in kinds}
            for b in range(batches):
                for kind in kinds[b % len(kinds):] + kinds[:b % len(kinds)]:
                    results = [None] * n
                    cpu0 = self.cpu.usage_ns() if self.cpu else None

                    def one(i, kind=kind):
                        results[i] = self.lab.ssh(kind, "alice", "true", timeout=120)
                    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                    t0 = time.monotonic()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(300)
                    dt = time.monotonic() - t0
                    lost = [(i, r and r.rc, r and r.message[-200:]) for i, r in enumerate(results)
                            if r is None or r.rc != 0 or r.job_id != expected[0]]
                    if lost:
                        self.check_state("alice", expected)
                        raise Broken("throughput %s: %d of %d logins lost or not adopted: %s"
                                     % (kind, len(lost), n, lost[:5]))
                    out[kind]["batch_s"].append(dt)
                    if self.cpu:
                        time.sleep(0.5)
                        cpu1 = self.cpu.usage_ns()
                        if kind in cpu1:
                            out[kind]["cpu_ms"].append((cpu1[kind] - cpu0[kind]) / 1e6 / n)
                        if "service" in cpu1:
                            out[kind]["service_cpu_ms"].append(
                                (cpu1["service"] - cpu0["service"]) / 1e6 / n)
                    self.note("throughput: %d concurrent %s logins, all adopted, in %.2f s"
                              % (n, kind, dt))
            for kind, v in out.items():
                v["median_batch_s"] = statistics.median(v["batch_s"])
                v["logins"] = n
                if v["cpu_ms"]:
                    v["median_cpu_ms_per_login"] = statistics.median(v["cpu_ms"])
                if v["service_cpu_ms"]:
                    v["median_service_cpu_ms_per_login"] = statistics.median(v["service_cpu_ms"])
            return out
        finally:
            self.cancel_own()

    # ---------------------------------------------------------------- memory
    def memory(self):
        """Memory of each kind's sshd processes per open session, and the
        service's own (Rss, Pss and private kB, from smaps_rollup)."""
        k = self.args.memory_sessions
        kinds = [x for x in self.kinds if x != "floor"] + (["floor"] if "floor" in self.kinds
                                                            else [])
        self.wait_clean("alice")
        out = {}
        try:
            expected = self.submit("alice", 1)
            for kind in kinds:
                listener = listener_pid(self.lab.ports[kind])
                before = set(descendants(listener))
                argv = self.lab.ssh_argv(kind, "alice", "sleep 60",
                                         options=("-o", "LogLevel=ERROR"))
                procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for _i in range(k)]
                try:
                    end = time.monotonic() + 60
                    while True:
                        sleeps = [p for p in descendants(listener) if comm(p) == "sleep"]
                        if len(sleeps) >= k or time.monotonic() > end:
                            break
                        time.sleep(0.2)
                    if len(sleeps) < k:
                        raise Broken("memory %s: only %d of %d sessions came up"
                                     % (kind, len(sleeps), k))
                    time.sleep(0.5)
                    tree = [p for p in descendants(listener) if p not in before
                            and comm(p).startswith("sshd")]
                    total = {"Rss": 0, "Pss": 0, "Private": 0}
                    for pid in tree:
                        try:
                            for key, value in smaps(pid).items():
                                total[key] += value
                        except OSError:
                            pass
                    out[kind] = {"sessions": k, "sshd_processes": len(tree),
                                 "per_session_kb": {key: value / k for key, value in
                                                    total.items()}}
                    self.note("memory: %s, %d sessions, %d sshd processes: %s kB per session"
                              % (kind, k, len(tree), {key: round(v / k) for key, v in
                                                      total.items()}))
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        try:
                            p.wait(30)
                        except subprocess.TimeoutExpired:
                            p.kill()
            if "plain" in out:
                for kind, v in out.items():
                    v["added_over_plain_kb"] = {key: v["per_session_kb"][key]
                                                - out["plain"]["per_session_kb"][key]
                                                for key in v["per_session_kb"]}
            if self.svc and self.svc.service_pid():
                out["service"] = smaps(self.svc.service_pid())
                self.note("memory: the adoption service: %s kB" % out["service"])
            return out
        finally:
            self.cancel_own()


# --------------------------------------------------------------------------- output

def fmt_ci(ci):
    return "[%+.1f, %+.1f]" % tuple(ci)


def _module_files(shim):
    here = os.path.dirname(shim)
    out = {}
    names = [os.path.basename(shim)]
    pkg = os.path.join(here, "slurm_adopt")
    if os.path.isdir(pkg):
        names += [os.path.join("slurm_adopt", n) for n in sorted(os.listdir(pkg))
                  if n.endswith(".py") and n not in ("service.py", "protocol.py")]
    for n in names:
        try:
            with open(os.path.join(here, n), "rb") as f:
                out[n] = f.read()
        except OSError:
            out[n] = None
    return out


def py_module_info(py_line):
    """Which module the py line loads, compared with this checkout's (the
    service's own modules, which pam_python never loads, left out)."""
    words = py_line.split()
    path = next((w for w in words if w.endswith(".py")), "?")
    mine = os.path.join(REPO, "roles", "adopt_module", "files", "pam_slurm_adopt.py")
    if os.path.realpath(path) == os.path.realpath(mine):
        vs = "this checkout"
    elif _module_files(path) == _module_files(mine):
        vs = "identical"
    else:
        vs = "different files"
    return {"path": path, "vs_this_checkout": vs}


def print_tables(results, extra):
    for title, key in (("Wall time per login (ms)", "stats"),
                       ("CPU time per login (ms): the kind's sshd process tree (cpuacct); "
                        "svc+service adds the adoption service's CPU", "cpu")):
        print("\n" + title)
        print("%-9s %-12s %9s %9s %11s %19s" % ("case", "kind", "median", "p90", "added/rnd",
                                                "95% CI"))
        for name, res in results.items():
            st = res.get(key)
            if not st:
                continue
            for kind in list(KINDS) + ["svc+service"]:
                s = st.get(kind)
                if s is None:
                    continue
                added = ci = ""
                if "paired_added_ms" in s:
                    added = "%+.1f" % s["paired_added_ms"]
                    ci = fmt_ci(s["paired_added_ci95_ms"])
                print("%-9s %-12s %9.1f %9.1f %11s %19s" % (name, kind, s["median_ms"],
                                                           s["p90_ms"], added, ci))
            for cname, c in st["comparisons"].items():
                print("%-9s %-12s %9s %9s %+11.1f %19s  below zero in %d of %d rounds"
                      % (name, cname.replace("_minus_", "-"), "", "", c["median_ms"],
                         fmt_ci(c["ci95_ms"]), c["below_zero"], c["rounds"]))
            if key == "cpu" and st.get("service_ms_per_round") is not None:
                print("%-9s %-12s %9.2f  (the service's CPU per round = per svc login)"
                      % (name, "service", st["service_ms_per_round"]))
            print("-" * 76)
        for name, res in results.items():
            if key == "stats" and res.get("c_hang"):
                print("%s: C module with stopped stepds: %s" % (name, ", ".join(
                    "rc %d after %.1f s" % (h["rc"], h["ms"] / 1e3) for h in res["c_hang"])))
    tp = extra.get("throughput")
    if tp:
        print("\nThroughput: %d concurrent logins (one job), every one adopted"
              % next(iter(tp.values()))["logins"])
        for kind, v in tp.items():
            print("  %-9s batch %s s (median %.2f s)%s%s" % (
                kind, ", ".join("%.2f" % x for x in v["batch_s"]), v["median_batch_s"],
                ("; sshd CPU %.1f ms per login" % v["median_cpu_ms_per_login"])
                if "median_cpu_ms_per_login" in v else "",
                ("; service CPU %.2f ms per login" % v["median_service_cpu_ms_per_login"])
                if "median_service_cpu_ms_per_login" in v and kind == "svc" else ""))
    mem = extra.get("memory")
    if mem:
        print("\nMemory per open session (sshd processes of the kind; kB)")
        for kind, v in mem.items():
            if kind == "service":
                print("  the adoption service itself: Rss %(Rss)d, Pss %(Pss)d, private "
                      "%(Private)d kB" % v)
                continue
            added = v.get("added_over_plain_kb", {})
            print("  %-9s Rss %7.0f Pss %7.0f private %7.0f   added over plain: private %+.0f, "
                  "Pss %+.0f" % (kind, v["per_session_kb"]["Rss"], v["per_session_kb"]["Pss"],
                                 v["per_session_kb"]["Private"], added.get("Private", 0),
                                 added.get("Pss", 0)))


def goals(results, extra):
    """The issue's goals for the service interface, met or missed."""
    out = []

    def cmp(res, key, cname):
        c = res.get(key, {}).get("comparisons", {}).get(cname)
        return c and (c["median_ms"], c["ci95_ms"])
    for name, res in results.items():
        cpu = cmp(res, "cpu", "svc_minus_c")
        if cpu:
            out.append(("sshd CPU added, svc <= c", name, cpu[0] <= 0,
                        "svc - c per round %+.2f ms %s" % (cpu[0], fmt_ci(cpu[1]))))
        wall = cmp(res, "stats", "svc_minus_c")
        if wall:
            out.append(("login wall added, svc <= c", name, wall[0] <= 0,
                        "svc - c per round %+.1f ms %s" % (wall[0], fmt_ci(wall[1]))))
        if res.get("c_hang"):
            svc = res["stats"].get("svc")
            hang = min(h["ms"] for h in res["c_hang"])
            out.append(("login wall clearly below c", name, svc and svc["max_ms"] < hang,
                        "svc median %.0f ms, max %.0f ms; c: %s" % (
                            svc["median_ms"], svc["max_ms"], ", ".join(
                                "rc %d after %.1f s" % (h["rc"], h["ms"] / 1e3)
                                for h in res["c_hang"]))))
    tp = extra.get("throughput", {}).get("svc")
    if tp:
        out.append(("throughput", "%d concurrent" % tp["logins"], True,
                    "all adopted; batch median %.2f s" % tp["median_batch_s"]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default="host", help="lab name (default: host)")
    ap.add_argument("--logins", type=int, default=30,
                    help="measured logins per kind per case (default: 30)")
    ap.add_argument("--silent-logins", type=int, default=10,
                    help="measured logins per kind in the silent case (default: 10)")
    ap.add_argument("--silent-c-logins", type=int, default=2,
                    help="C module logins tried in the silent case (default: 2)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="unmeasured rounds per case before measuring (default: 3)")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="cases to run (default: %s)" % ",".join(CASES))
    ap.add_argument("--crowd-jobs", type=int, default=100)
    ap.add_argument("--silent-stepds", type=int, default=3)
    ap.add_argument("--throughput", type=int, default=50,
                    help="concurrent logins per batch; 0: no throughput part (default: 50)")
    ap.add_argument("--throughput-batches", type=int, default=3)
    ap.add_argument("--memory-sessions", type=int, default=10,
                    help="open sessions per kind for the memory part; 0: none (default: 10)")
    ap.add_argument("--no-service", action="store_true",
                    help="do not set up the svc and svcchild kinds")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--lock-timeout", type=float, default=300,
                    help="seconds to wait for the lab lock (default: 300)")
    ap.add_argument("--settle", type=float, default=120,
                    help="seconds to wait for a case's user to have no jobs and default adopt "
                         "lines (default: 120)")
    ap.add_argument("--no-cpu", action="store_true",
                    help="do not measure CPU time (cgroup v1 cpuacct)")
    args = ap.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    if args.logins < 1 or args.warmup < 0 or any(c not in CASES for c in args.cases):
        ap.error("--logins must be >= 1, --warmup >= 0, --cases among %s" % ",".join(CASES))

    try:
        lab = labctl.Lab.load(args.lab)
    except labctl.LabError as e:
        print("login_latency: %s" % e, file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    print("lab %s (Slurm %s), %d CPU(s), load %s, %d measured logins per kind per case, "
          "%d warmup rounds" % (lab.name, lab.slurm_version, os.cpu_count() or 0,
                                " ".join("%.1f" % x for x in os.getloadavg()), args.logins,
                                args.warmup), flush=True)
    bench = Bench(lab, args)
    rc, error = 0, None
    t0 = time.monotonic()
    load0 = os.getloadavg()
    try:
        with lab.lock(timeout=args.lock_timeout):
            lab.ensure_up(timeout=60)      # the node may still be completing earlier jobs
            if not args.no_service:
                bench.svc = service_lab.ServiceLab(lab).up()
                bench.kinds = [k for k in KINDS if k in lab.ports]
            try:
                if not args.no_cpu and os.path.isdir(CPUACCT):
                    pids = {k: listener_pid(lab.ports[k]) for k in bench.kinds}
                    if bench.svc:
                        pids["service"] = bench.svc.service_pid()
                    bench.cpu = CpuAccounting(pids)
                elif not args.no_cpu:
                    bench.note("no CPU accounting: needs cgroup v1 (cpuacct)")
                bench.run()
            finally:
                bench.silent_down()
                bench.cancel_own()
                bench.crowd_down()
                if bench.cpu:
                    bench.cpu.close()
                if bench.svc:
                    bench.svc.close()
    except Broken as e:
        error, rc = "broken login: %s" % e, 1
    except Disturbed as e:
        error, rc = "lab disturbed twice by other users, no valid numbers: %s" % e, 3
    except Busy as e:
        error, rc = "%s" % e, 3
    except labctl.LabError as e:
        error, rc = "lab error: %s" % e, 2
    total = time.monotonic() - t0

    if bench.results or bench.extra:
        print_tables(bench.results, bench.extra)
        print("\nGoals of the service interface:")
        for goal, where, ok, detail in goals(bench.results, bench.extra):
            print("  %-30s %-12s %-6s %s" % (goal, where, "MET" if ok else "MISSED", detail))
        for name, res in bench.results.items():
            module = res["py_module"]
            if module["vs_this_checkout"] == "different files":
                print("%s: WARNING: the py kind loads %s, not this checkout's module"
                      % (name, module["path"]))
    print("\ntotal run time %.0f s; load average %s at the start, %s at the end"
          % (total, " ".join("%.1f" % x for x in load0),
             " ".join("%.1f" % x for x in os.getloadavg())))
    if error:
        print("login_latency: FAILED: %s" % error, file=sys.stderr)
    if args.json:
        doc = {
            "date": started.isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "kernel": platform.release(), "lab": lab.name,
            "slurm_version": lab.slurm_version, "module_path": lab.module_path,
            "kinds": list(bench.kinds), "logins_per_kind": args.logins,
            "warmup_rounds": args.warmup, "load_start": load0, "load_end": os.getloadavg(),
            "total_s": total, "ok": rc == 0, "error": error, "notes": bench.log,
            "cases": bench.results, "extra": bench.extra,
            "goals": [{"goal": g, "where": w, "met": ok, "detail": d}
                      for g, w, ok, d in goals(bench.results, bench.extra)],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
