#!/usr/bin/env python3
"""Login latency of the adopt modules, measured on a running test lab.

Times complete ssh logins (``ssh ... true``, key auth, to 127.0.0.1) against
the lab's sshds -- ``plain`` (no adopt module), ``c`` (SchedMD's C
pam_slurm_adopt), ``py`` (this collection's Python module under pam_python)
and ``floor`` (pam_python with a module that only returns PAM_SUCCESS: what
pam_python itself costs) -- in one run, for two cases:

* ``one_job``:  a user with one running job (alice): "only one job" path;
* ``two_jobs``: a user with two running jobs (bob): the module asks slurmd
  for the caller's job (callerid RPC, munge-authenticated), which fails for a
  login from outside any job, and falls back to the "newest" job.

Within a case the kinds are interleaved round-robin (the order rotates every
round) so that drift of the machine affects all of them alike. Prints median
and p90 per kind, the cost added over ``plain``, what our code adds on top of
pam_python (``py`` minus ``floor``), and the ratios to the C module.

Not a test: it is a measurement, but it refuses to report numbers for broken
logins. It exits non-zero when a measured login fails or when a placement
check (a few logins per kind through ``Lab.ssh``, which reads the session's
cgroup) finds a session outside the expected job.

The lab is shared: other test runs may cancel every job or submit jobs for
the same users. The benchmark holds the lab lock (``Lab.lock``), checks the
user's jobs and the adopt lines after every round, and when it detects a
disturbance it re-submits its jobs and retries the case once (reported in the
output and the JSON).

Usage::

    python3 benchmarks/login_latency.py [--lab host] [--logins 30] [--warmup 3]
                                        [--json results.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))

import labctl  # noqa: E402  pylint: disable=wrong-import-position

KINDS = ("plain", "c", "py", "floor")
CASES = (
    # name, default user, number of jobs
    ("one_job", "alice", 1),
    ("two_jobs", "bob", 2),
)
SSH_TIMEOUT = 30.0


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
    lo = stats[int((1 - level) / 2 * n)]
    hi = stats[min(n - 1, int((1 + level) / 2 * n))]
    return [lo, hi]


def summarize_cpu(cpu_ms):
    """Per kind: median CPU ms per login (the sshd's whole process tree) and
    the median added over plain per round, with a bootstrap CI."""
    out = {}
    for kind, xs in cpu_ms.items():
        out[kind] = {"median_ms": statistics.median(xs)}
        if kind != "plain":
            diffs = [x - p for x, p in zip(xs, cpu_ms["plain"])]
            out[kind]["paired_added_ms"] = statistics.median(diffs)
            out[kind]["paired_added_ci95_ms"] = bootstrap_ci(diffs)
    if "floor" in cpu_ms:
        diffs = [y - f for y, f in zip(cpu_ms["py"], cpu_ms["floor"])]
        out["py_minus_floor"] = {"paired_ms": statistics.median(diffs),
                                 "ci95_ms": bootstrap_ci(diffs)}
    return out


def _added_ratio(x, c_added):
    # A ratio to the C module's added cost is meaningless when that is ~nothing.
    return (x / c_added) if c_added > 0.5 else None


def summarize(samples_ms):
    """Per kind: n, median, p90, min, max, added over plain (difference of
    medians) and paired_added (median of the per-round differences). With a
    floor: py_minus_floor, what our code adds on top of pam_python."""
    kinds = list(samples_ms)
    out = {}
    for kind in kinds:
        xs = samples_ms[kind]
        out[kind] = {
            "n": len(xs),
            "median_ms": statistics.median(xs),
            "p90_ms": percentile(xs, 90),
            "min_ms": min(xs),
            "max_ms": max(xs),
        }
    plain = out["plain"]["median_ms"]
    for kind in kinds:
        out[kind]["added_over_plain_ms"] = out[kind]["median_ms"] - plain
        # Same estimate from the pairs of one round (logins a fraction of a
        # second apart): less sensitive to drift; a cross-check.
        out[kind]["paired_added_ms"] = statistics.median(
            x - p for x, p in zip(samples_ms[kind], samples_ms["plain"]))
    c_added = out["c"]["added_over_plain_ms"]
    py_added = out["py"]["added_over_plain_ms"]
    ratios = {
        "py_over_c": out["py"]["median_ms"] / out["c"]["median_ms"],
        "added_py_over_added_c": _added_ratio(py_added, c_added),
    }
    if "floor" in out:
        own = out["py"]["median_ms"] - out["floor"]["median_ms"]
        out["py_minus_floor"] = {
            "median_diff_ms": own,
            "paired_ms": statistics.median(
                x - f for x, f in zip(samples_ms["py"], samples_ms["floor"])),
        }
        ratios["floor_over_added_c"] = _added_ratio(out["floor"]["added_over_plain_ms"], c_added)
        ratios["py_minus_floor_over_added_c"] = _added_ratio(own, c_added)
        # Per round: (py - floor) - (c - plain). The four logins of a round
        # are a second or so apart, so the machine's drift cancels; < 0 means
        # our code on top of pam_python added less than the C module did.
        per_round = [(y - f) - (c - p) for p, c, y, f in zip(
            samples_ms["plain"], samples_ms["c"], samples_ms["py"], samples_ms["floor"])]
        out["own_minus_c"] = {
            "paired_median_ms": statistics.median(per_round),
            "ci95_ms": bootstrap_ci(per_round),
            "rounds_below_zero": sum(1 for d in per_round if d < 0),
            "rounds": len(per_round),
        }
    for kind in kinds:
        if kind != "plain":
            out[kind]["paired_added_ci95_ms"] = bootstrap_ci(
                [x - p for x, p in zip(samples_ms[kind], samples_ms["plain"])])
    return out, ratios


# --------------------------------------------------------------------------- CPU time per login

CPUACCT = "/sys/fs/cgroup/cpuacct"


class CpuAccounting(object):
    """CPU time that each lab sshd (and everything it forks: the per-login
    sshd, its PAM modules, the session's `true`) uses, from a cgroup v1
    cpuacct group per kind. Slurm (proctrack/cgroup, task/cgroup here) moves
    an adopted sshd into the job's freezer and memory groups, never into
    cpuacct, so the whole login stays accounted. It does not include the
    work of slurmstepd, slurmd or munged (other processes), which both
    modules cause alike. The listeners are moved back at the end."""

    def __init__(self, lab, kinds):
        self.kinds = kinds
        self.root = os.path.join(CPUACCT, "slurm-adopt-bench-%d" % os.getpid())
        self.pids = {}
        self.original = {}
        for kind in kinds:
            out = subprocess.run(["ss", "-Hltnp", "sport = :%d" % lab.ports[kind]],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10,
                                 check=False).stdout.decode()
            pids = sorted({int(x) for x in re.findall(r"pid=(\d+)", out)})
            if len(pids) != 1:
                raise OSError("cannot tell the sshd listening on port %d: %r"
                              % (lab.ports[kind], out))
            self.pids[kind] = pids[0]
        os.mkdir(self.root)
        try:
            for kind, pid in self.pids.items():
                self.original[kind] = self._cgroup_of(pid)
                os.mkdir(os.path.join(self.root, kind))
                with open(os.path.join(self.root, kind, "cgroup.procs"), "w") as f:
                    f.write("%d\n" % pid)
        except BaseException:
            self.close()
            raise

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
        for kind in self.kinds:
            with open(os.path.join(self.root, kind, "cpuacct.usage")) as f:
                out[kind] = int(f.read())
        return out

    def intact(self):
        """Every listener is still in its group (no sshd restarted meanwhile)."""
        try:
            return all(self._cgroup_of(pid) == "/" + os.path.relpath(
                os.path.join(self.root, kind), CPUACCT) for kind, pid in self.pids.items())
        except OSError:
            return False

    def close(self):
        for kind, pid in self.pids.items():
            back = os.path.join(CPUACCT, self.original.get(kind, "/").lstrip("/"), "cgroup.procs")
            try:
                with open(back, "w") as f:
                    f.write("%d\n" % pid)
            except OSError:
                pass
        for kind in self.kinds:
            path = os.path.join(self.root, kind)
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


# --------------------------------------------------------------------------- the benchmark

class Bench:
    def __init__(self, lab, args):
        self.lab = lab
        self.args = args
        self.submitted = []          # every job id this run submitted
        self.log = []                # notes about disturbances and retries
        self.results = {}            # finished cases
        self.lines = None            # adopt lines (c, py) in force for the current case
        # The floor sshd (pam_python with a do-nothing module) if the lab has one.
        self.kinds = tuple(k for k in KINDS if k != "floor" or "floor" in lab.ports)
        self.cpu = None              # CpuAccounting, when available

    def note(self, msg):
        stamp = time.strftime("%H:%M:%S")
        self.log.append("%s %s" % (stamp, msg))
        print("  [%s] %s" % (stamp, msg), flush=True)

    # ---------------------------------------------------------------- lab state
    def current_lines(self):
        return tuple(self.lab.account_line(k) for k in ("c", "py"))

    def is_default(self, lines):
        """Lines are up.sh's default adopt lines (no extra options). The py
        module's path may differ from the state file's: another session may
        have re-run up.sh with its own MODULE_PATH; it is reported."""
        for kind, line in zip(("c", "py"), lines):
            want = self.lab.default_account_line(kind).split()
            have = line.split()
            if kind == "py" and len(have) == len(want) and have[3].endswith("/pam_slurm_adopt.py"):
                have[3] = want[3]
            if have != want:
                return False
        return True

    def wait_clean(self, user):
        """Wait until user has no jobs and the adopt lines are the defaults
        (another test may have set options); remember those lines."""
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
        # A cancelled job may still be listed (COMPLETING) after its extern
        # step is gone: only RUNNING jobs with their extern socket count.
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
            self.lab.cancel(mine)

    # ---------------------------------------------------------------- logins
    def timed_login(self, kind, user):
        argv = self.lab.ssh_argv(kind, user, "true", options=("-o", "LogLevel=ERROR"))
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=SSH_TIMEOUT, check=False)
        dt = (time.perf_counter() - t0) * 1000.0
        return dt, p.returncode, p.stderr.decode("utf-8", "replace").strip()

    def verify(self, user, expected, where):
        """Placement check through Lab.ssh (reads the session's cgroup)."""
        results = []
        for kind in self.kinds:
            r = self.lab.ssh(kind, user, "true", timeout=SSH_TIMEOUT)
            results.append({"kind": kind, "where": where, "rc": r.rc, "job": r.job_id,
                            "cgroup": r.job_cgroup})
            problem = None
            if r.rc != 0:
                problem = "login failed (rc %d): %s" % (r.rc, r.message)
            elif kind in ("plain", "floor"):
                if r.job_id is not None:
                    problem = "%s sshd session is in job %s" % (kind, r.job_id)
            elif len(expected) == 1 and r.job_id != expected[0]:
                problem = "session in job %s, expected %s" % (r.job_id, expected[0])
            elif r.job_id not in expected:
                problem = "session in job %s, expected one of %s" % (r.job_id, expected)
            if problem:
                self.check_state(user, expected)   # Disturbed wins over Broken
                raise Broken("%s %s (%s check): %s" % (kind, user, where, problem))
        return results

    def run_case(self, name, user, njobs):
        n, warm = self.args.logins, self.args.warmup
        self.wait_clean(user)
        expected = self.submit(user, njobs)
        print("case %s: %s with job(s) %s" % (name, self.lab.user(user),
                                               ", ".join(map(str, expected))), flush=True)
        self.check_state(user, expected)
        checks = self.verify(user, expected, "before")
        kinds = self.kinds
        samples = {k: [] for k in kinds}
        cpu = {k: [] for k in kinds}
        mid = warm + n // 2
        t_case = time.monotonic()
        for rnd in range(warm + n):
            shift = rnd % len(kinds)
            order = kinds[shift:] + kinds[:shift]
            round_fail = []
            round_ms = {}
            cpu0 = self.cpu.usage_ns() if self.cpu else None
            for kind in order:
                dt, rc, err = self.timed_login(kind, user)
                if rc != 0:
                    round_fail.append({"kind": kind, "round": rnd, "rc": rc, "stderr": err})
                round_ms[kind] = dt
            # Verify the lab after every round: a cancelled job or a foreign one
            # invalidates the case (and explains a failed login).
            self.check_state(user, expected)
            if self.cpu and rnd >= warm:
                # read after check_state (an squeue): the sessions have ended by then
                cpu1 = self.cpu.usage_ns()
                for kind in kinds:
                    cpu[kind].append((cpu1[kind] - cpu0[kind]) / 1e6)
            if round_fail:
                if rnd >= warm:
                    raise Broken("measured login(s) failed with the lab undisturbed: %s"
                                 % round_fail)
                self.note("warmup login failure (not measured): %s" % round_fail)
            if rnd >= warm:
                for kind, dt in round_ms.items():
                    samples[kind].append(dt)
            if rnd == mid:
                checks += self.verify(user, expected, "middle")
        checks += self.verify(user, expected, "after")
        self.check_state(user, expected)
        elapsed = time.monotonic() - t_case
        self.cancel_own()
        stats, ratios = summarize(samples)
        cpu_stats = None
        if self.cpu:
            if not self.cpu.intact():
                self.note("an sshd was restarted during case %s: no CPU times" % name)
            else:
                cpu_stats = summarize_cpu(cpu)
        return {"user": self.lab.user(user), "jobs": expected, "elapsed_s": elapsed,
                "adopt_lines": {"c": self.lines[0], "py": self.lines[1]},
                "py_module": py_module_info(self.lines[1]),
                "stats": stats, "ratios": ratios, "placement_checks": checks,
                "samples_ms": samples, "cpu": cpu_stats, "cpu_samples_ms": cpu if self.cpu else None}

    def run(self):
        results = self.results
        for name, default_user, njobs in CASES:
            user = self.args.one_job_user if njobs == 1 else self.args.two_jobs_user
            user = user or default_user
            for attempt in (1, 2):
                try:
                    res = self.run_case(name, user, njobs)
                    res["attempt"] = attempt
                    results[name] = res
                    break
                except Disturbed as e:
                    self.note("case %s attempt %d disturbed by another lab user: %s"
                              % (name, attempt, e))
                    self.cancel_own()
                    if attempt == 2:
                        raise
                    self.note("re-submitting and retrying case %s once" % name)
        return results


# --------------------------------------------------------------------------- output

def fmt_ratio(x):
    return "n/a" if x is None else "%.2f" % x


def _module_files(shim):
    """{relative path: bytes} of the shim and its slurm_adopt package."""
    here = os.path.dirname(shim)
    out = {}
    names = [os.path.basename(shim)]
    pkg = os.path.join(here, "slurm_adopt")
    if os.path.isdir(pkg):
        names += [os.path.join("slurm_adopt", n) for n in sorted(os.listdir(pkg))
                  if n.endswith(".py")]
    for n in names:
        try:
            with open(os.path.join(here, n), "rb") as f:
                out[n] = f.read()
        except OSError:
            out[n] = None
    return out


def py_module_info(py_line):
    """Which module file the py line loads, compared with this checkout's."""
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


def print_table(results):
    print()
    print("%-9s %-6s %10s %8s %10s %10s %5s" % ("case", "kind", "median ms", "p90 ms",
                                              "added ms", "paired ms", "n"))
    print("-" * 65)
    for name, res in results.items():
        for kind in KINDS:
            s = res["stats"].get(kind)
            if s is None:
                continue
            added = paired = "-"
            if kind != "plain":
                added = "%+.1f" % s["added_over_plain_ms"]
                paired = "%+.1f" % s["paired_added_ms"]
            print("%-9s %-6s %10.1f %8.1f %10s %10s %5d" % (name, kind, s["median_ms"],
                                                          s["p90_ms"], added, paired, s["n"]))
        own = res["stats"].get("py_minus_floor")
        if own:
            print("%-9s %-6s %10s %8s %10s %10s" % (name, "py-floor", "", "",
                                                    "%+.1f" % own["median_diff_ms"],
                                                    "%+.1f" % own["paired_ms"]))
        print("-" * 65)
    if any(res.get("cpu") for res in results.values()):
        print()
        print("CPU time of the sshd process tree per login (cpuacct), median ms; added over plain "
              "and py-floor per round, with 95% CI")
        for name, res in results.items():
            c = res.get("cpu")
            if not c:
                continue
            for kind in KINDS:
                if kind not in c:
                    continue
                extra = ""
                if kind != "plain":
                    lo, hi = c[kind]["paired_added_ci95_ms"]
                    extra = "  added %+.1f [%+.1f, %+.1f]" % (c[kind]["paired_added_ms"], lo, hi)
                print("%-9s %-6s %8.1f%s" % (name, kind, c[kind]["median_ms"], extra))
            if "py_minus_floor" in c:
                lo, hi = c["py_minus_floor"]["ci95_ms"]
                print("%-9s %-6s %8s  added %+.1f [%+.1f, %+.1f]"
                      % (name, "py-floor", "", c["py_minus_floor"]["paired_ms"], lo, hi))
        print()
    for name, res in results.items():
        module = res["py_module"]
        print("%s: py module measured: %s%s" % (name, module["path"], {
            "this checkout": "",
            "identical": "  (another checkout; same files as this one)",
        }.get(module["vs_this_checkout"], "  (WARNING: %s from this checkout's module)"
              % module["vs_this_checkout"])))
    print()
    for name, res in results.items():
        st, r = res["stats"], res["ratios"]
        retry = " (after a retry: the first attempt was disturbed)" if res["attempt"] > 1 else ""
        print("%s: python module adds %.1f ms vs C module's %.1f ms per login (ratio %s); "
              "py/c total %.2f%s" % (name, st["py"]["added_over_plain_ms"],
                                      st["c"]["added_over_plain_ms"],
                                      fmt_ratio(r["added_py_over_added_c"]), r["py_over_c"],
                                      retry))
        if "floor" in st:
            pad = " " * len(name)
            print("%s: of that, pam_python itself (floor) %.1f ms (ratio to C %s) and our code "
                  "on top of it %.1f ms (ratio to C %s)"
                  % (pad, st["floor"]["added_over_plain_ms"],
                     fmt_ratio(r["floor_over_added_c"]), st["py_minus_floor"]["median_diff_ms"],
                     fmt_ratio(r["py_minus_floor_over_added_c"])))
            d = st["own_minus_c"]
            print("%s: per round, (py - floor) - (c - plain): median %+.1f ms, 95%% CI "
                  "[%+.1f, %+.1f], below zero in %d of %d rounds"
                  % (pad, d["paired_median_ms"], d["ci95_ms"][0], d["ci95_ms"][1],
                     d["rounds_below_zero"], d["rounds"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default="host", help="lab name (default: host)")
    ap.add_argument("--logins", type=int, default=30,
                    help="measured logins per kind per case (default: 30)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="unmeasured rounds per case before measuring (default: 3)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--one-job-user", default=None, help="user of the one-job case (alice)")
    ap.add_argument("--two-jobs-user", default=None, help="user of the two-job case (bob)")
    ap.add_argument("--lock-timeout", type=float, default=300,
                    help="seconds to wait for the lab lock (default: 300)")
    ap.add_argument("--settle", type=float, default=60,
                    help="seconds to wait for the case's user to have no jobs and the adopt "
                         "lines to be the defaults (default: 60)")
    ap.add_argument("--no-cpu", action="store_true",
                    help="do not measure the sshds' CPU time (cgroup v1 cpuacct)")
    args = ap.parse_args(argv)
    if args.logins < 1 or args.warmup < 0:
        ap.error("--logins must be >= 1 and --warmup >= 0")

    try:
        lab = labctl.Lab.load(args.lab)
        # Shared lab: the node is briefly "completing" after a cancel_all.
        deadline = time.monotonic() + 30
        while lab.check() and time.monotonic() < deadline:
            time.sleep(1)
        lab.ensure_up()
    except labctl.LabError as e:
        print("login_latency: %s" % e, file=sys.stderr)
        return 2

    started = datetime.datetime.now(datetime.timezone.utc)
    print("lab %s (Slurm %s), %d CPU(s), %d measured logins per kind per case, %d warmup rounds"
          % (lab.name, lab.slurm_version, os.cpu_count() or 0, args.logins, args.warmup),
          flush=True)
    bench = Bench(lab, args)
    if "floor" not in bench.kinds:
        bench.note("lab %s has no floor sshd (pam_python with a do-nothing module): measuring "
                   "plain, c and py only (lab/host/up.sh adds it)" % lab.name)
    rc = 0
    results = {}
    error = None
    t0 = time.monotonic()
    try:
        with lab.lock(timeout=args.lock_timeout):
            if not args.no_cpu and lab.root == "/" and os.path.isdir(CPUACCT):
                try:
                    bench.cpu = CpuAccounting(lab, bench.kinds)
                except OSError as e:
                    bench.note("no CPU accounting: %s" % e)
            try:
                bench.run()
            finally:
                results = bench.results
                bench.cancel_own()
                if bench.cpu:
                    bench.cpu.close()
    except Broken as e:
        error, rc = "broken login: %s" % e, 1
    except Disturbed as e:
        error, rc = "lab disturbed twice by other users, no valid numbers: %s" % e, 3
    except Busy as e:
        error, rc = "%s" % e, 3
    except labctl.LabError as e:
        error, rc = "lab error: %s" % e, 2
    except subprocess.TimeoutExpired as e:
        error, rc = "ssh timed out: %s" % e, 1
    total = time.monotonic() - t0

    if results:
        print_table(results)
    print("\ntotal run time %.0f s" % total)
    if error:
        print("login_latency: FAILED: %s" % error, file=sys.stderr)
    if args.json:
        doc = {
            "date": started.isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "lab": lab.name,
            "slurm_version": lab.slurm_version,
            "module_path": lab.module_path,
            "kinds": list(bench.kinds),
            "logins_per_kind": args.logins,
            "warmup_rounds": args.warmup,
            "total_s": total,
            "ok": rc == 0,
            "error": error,
            "notes": bench.log,
            "cases": results,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
