#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the Python module's own code costs, phase by phase, outside sshd.

Each sample is a fresh ``/usr/bin/python3 -I -B`` process (isolated, no
bytecode writing: as pam_python runs it) that imports the package from a
module directory, then runs the decision flow for a lab user in dry-run mode
(the ``explain`` path: every slurmstepd is asked for its uid, the adoption
itself is replaced by one more uid request), with a real TCP connection to
127.0.0.1 as "the ssh connection", so that the callerid RPC really goes to the
lab's slurmd, which looks that connection up. It times:

* ``import``:     ``from slurm_adopt import entry`` (the package is byte-compiled);
* ``netinfo``:    finding its own TCP connection (to the lab's plain sshd) in
  /proc, as the module does in sshd before the callerid RPC (the several-jobs
  path only, but measured in both cases);
* ``flow``:       the whole ``Adopter.run()``;
* inside it:     ``conf`` (slurm.conf + cgroup.conf), ``munge`` (the credential),
  ``rpc`` (the callerid RPC including ``munge``: mostly slurmd's own work)
  and ``newest``.

With several ``--module-dir`` (e.g. this checkout and an older one from
``git archive``) the directories take turns in every round, so they can be
compared in one run. The lab must be up; the script holds the lab lock,
submits one job for the one-job user, measures, cancels it, then the same
with two jobs for the two-jobs user.

Usage::

    python3 benchmarks/module_cost.py [--rounds 30] [--module-dir DIR ...] [--json FILE]

This is not the login benchmark (``login_latency.py`` measures whole ssh
logins, including pam_python itself and slurmstepd's work); it shows where
the module's own milliseconds go.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))

import labctl  # noqa: E402  pylint: disable=wrong-import-position
from fresh_python import run_fresh  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_DIR = os.path.join(REPO, "roles", "adopt_module", "files")

# Runs in the fresh interpreter. Prints one JSON line of phase times (ms).
CHILD = r'''
import sys, time, json
T = {}
t0 = time.perf_counter()
sys.path.insert(0, MODULE_DIR)
from slurm_adopt import entry
T["import"] = (time.perf_counter() - t0) * 1e3
from slurm_adopt import flow, slurmconf
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options

def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            T[name] = T.get(name, 0.0) + (time.perf_counter() - t) * 1e3
    return wrapper

load = slurmconf.SlurmConfig.load.__func__
slurmconf.SlurmConfig.load = classmethod(timed("conf", load))
rpc = flow.callerid_rpc
def rpc_with_munge(*args):
    from slurm_adopt import callerid
    if not hasattr(callerid, "_timed"):
        callerid.munge_encode = timed("munge", callerid.munge_encode)
        callerid._timed = True
    return rpc(*args)
flow.callerid_rpc = timed("rpc", rpc_with_munge)
flow.pick_newest = timed("newest", flow.pick_newest)

# A real TCP connection (to the lab's plain sshd), found as sshd's module
# finds its own: the callerid RPC then makes slurmd look up a real socket.
from slurm_adopt.sockets import socket as _socket
tcp = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
tcp.settimeout(5)
tcp.connect(("127.0.0.1", PLAIN_PORT))
from slurm_adopt import callerid
t = time.perf_counter()
conn = callerid.own_netinfo("self")
T["netinfo"] = (time.perf_counter() - t) * 1e3
ctx = entry.ExplainContext(USER, SERVICE, conn, lambda text: None)
opts = parse_options(["service=" + SERVICE])
log = Log(opts.log_level)
adopter = flow.Adopter(opts, ctx, log, dry_run=True, environ={"SLURM_CONF": SLURM_CONF})
t = time.perf_counter()
rc = adopter.run()
T["flow"] = (time.perf_counter() - t) * 1e3
log.close()
tcp.close()
print(json.dumps({"rc": rc, "job": adopter.adopted_job, "ms": T}))
'''


def sample(module_dir, user, lab):
    return run_fresh(CHILD, MODULE_DIR=module_dir, USER=user, SERVICE=lab.pam_services["py"],
                     SLURM_CONF=lab.slurm_conf, PLAIN_PORT=lab.ports["plain"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default="host")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--module-dir", action="append", dest="dirs",
                    help="directory holding slurm_adopt/ (repeatable; default: this checkout's)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--lock-timeout", type=float, default=600)
    args = ap.parse_args(argv)
    dirs = args.dirs or [DEFAULT_DIR]
    for d in dirs:
        if not os.path.isdir(os.path.join(d, "slurm_adopt")):
            ap.error("%s has no slurm_adopt package" % d)
        # As on a node (and in the lab): byte-compiled.
        subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q",
                        os.path.join(d, "slurm_adopt")], check=True, stdout=subprocess.DEVNULL)
    lab = labctl.Lab.load(args.lab)
    cases = (("one_job", "alice", 1), ("two_jobs", "bob", 2))
    results = {}
    with lab.lock(timeout=args.lock_timeout):
        lab.ensure_up(timeout=60)
        for name, who, njobs in cases:
            if lab.jobs_of(who):
                raise SystemExit("module_cost: %s already has jobs; not touching them"
                                 % lab.user(who))
            expected = []
            try:
                for i in range(njobs):
                    if i:
                        time.sleep(1.1)   # distinct start times: a well-defined newest job
                    expected.append(lab.submit(who))
                samples = {d: [] for d in dirs}
                for rnd in range(args.rounds + 1):          # round 0: warm-up
                    for d in (dirs if rnd % 2 else dirs[::-1]):
                        s = sample(d, lab.user(who), lab)
                        if s["job"] not in expected:
                            raise SystemExit("module_cost: %s: decided %r, expected one of %s"
                                             % (name, s, expected))
                        if rnd:
                            samples[d].append(s["ms"])
            finally:
                if expected:
                    lab.cancel(expected)
            results[name] = {}
            for d in dirs:
                phases = sorted({k for s in samples[d] for k in s})
                results[name][d] = {k: statistics.median(s.get(k, 0.0) for s in samples[d])
                                    for k in phases}
    print("median ms over %d fresh interpreters per case and module dir" % args.rounds)
    phases = ("import", "netinfo", "flow", "conf", "rpc", "munge", "newest")
    print("%-9s %-50s " % ("case", "module dir") + " ".join("%7s" % p for p in phases))
    for name, per_dir in results.items():
        for d, med in per_dir.items():
            print("%-9s %-50s " % (name, d[-50:])
                  + " ".join("%7s" % ("%.2f" % med[p] if p in med else "-") for p in phases))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "dirs": dirs, "cases": results,
                       "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                      f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
