#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the cheap wins on the pam_python path saved, each on its own (issue 11).

Two versions of the module (default: main's, from ``git archive``, and this
checkout's) take turns, round after round, in fresh ``/usr/bin/python3 -I -B``
interpreters (as pam_python runs the module), for a lab user with one job:

* ``import_ms`` and ``modules``: ``from slurm_adopt import entry`` and the
  modules loaded by the end of the one-job flow (the package's own, and all);
* ``flow_ms`` and ``stepd_connections``: the one-job decision flow (dry run,
  as ``explain``: the adoption is replaced by one more uid request on the
  same kind of connection), and the connections it opens to slurmstepd
  sockets (counted on the socket type the package uses);
* ``connection_ms``: what one slurmstepd connection costs (connect, version
  handshake, one uid request, close), measured directly: the saving of each
  connection not opened;
* ``netinfo_self_ms`` and ``netinfo_proc_ms``: finding the ssh connection by
  asking the process's own socket (getsockname/getpeername, what pam_python
  does) and through /proc/<pid>/fd and /proc/<pid>/net/tcp (what the pam_exec
  helper and the service do), each on a real TCP connection.

Usage::

    python3 benchmarks/pam_python_wins.py [--rounds 30] [--before REV] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))

import labctl  # noqa: E402  pylint: disable=wrong-import-position
from fresh_python import run_fresh  # noqa: E402  pylint: disable=wrong-import-position

CHILD = r'''
import json, os, struct, sys, time
T = {}
before = set(sys.modules)
t0 = time.perf_counter()
sys.path.insert(0, MODULE_DIR)
from slurm_adopt import entry
T["import_ms"] = (time.perf_counter() - t0) * 1e3
import _socket
connects = []
Base = _socket.socket

class Counting(Base):
    def connect(self, address):
        if isinstance(address, str) and address.startswith(SPOOL):
            connects.append(address)
        return Base.connect(self, address)

    def connect_ex(self, address):
        if isinstance(address, str) and address.startswith(SPOOL):
            connects.append(address)
        return Base.connect_ex(self, address)
_socket.socket = Counting
from slurm_adopt import flow
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options
ctx = entry.ExplainContext(USER, SERVICE, None, lambda text: None)
opts = parse_options(["service=" + SERVICE])
log = Log(opts.log_level, to_syslog=False)
adopter = flow.Adopter(opts, ctx, log, dry_run=True, environ={"SLURM_CONF": SLURM_CONF})
t = time.perf_counter()
rc = adopter.run()
T["flow_ms"] = (time.perf_counter() - t) * 1e3
T["stepd_connections"] = len(connects)
loaded = set(sys.modules) - before
T["modules_package"] = len([m for m in loaded if m.startswith("slurm_adopt")])
T["modules_all"] = len(loaded)
_socket.socket = Base

# one slurmstepd connection, by hand (the same for both versions)
t = time.perf_counter()
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
s.settimeout(2)
s.connect(STEP)
s.sendall(struct.pack("=i", 0x2600))
s.recv(4)
s.sendall(struct.pack("=i", 20))
s.recv(4)
s.close()
T["connection_ms"] = (time.perf_counter() - t) * 1e3

# the ssh connection: the own socket asked, or /proc scanned
from slurm_adopt import callerid
tcp = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
tcp.settimeout(5)
tcp.connect(("127.0.0.1", PLAIN_PORT))
t = time.perf_counter()
a = callerid.own_netinfo("self")
T["netinfo_self_ms"] = (time.perf_counter() - t) * 1e3
t = time.perf_counter()
b = callerid.own_netinfo(os.getpid())
T["netinfo_proc_ms"] = (time.perf_counter() - t) * 1e3
assert (a.port_src, a.port_dst) == (b.port_src, b.port_dst)
tcp.close()
print(json.dumps({"rc": rc, "job": adopter.adopted_job, "ms": T}))
'''


def sample(module_dir, lab, user, step):
    return run_fresh(CHILD, MODULE_DIR=module_dir, USER=user, SERVICE=lab.pam_services["py"],
                     SLURM_CONF=lab.slurm_conf, PLAIN_PORT=lab.ports["plain"],
                     SPOOL=lab.host_path(lab.spool_dir), STEP=step)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default="host")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--before", default="main", help="git revision of the older module (main)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    lab = labctl.Lab.load(args.lab)
    if lab.root != "/":
        ap.error("the host lab only (the samples run on the host's python3)")
    old = tempfile.mkdtemp(prefix="pam-wins-")
    archive = subprocess.run(["git", "-C", REPO, "archive", args.before, "roles/adopt_module/files"],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
    dirs = {args.before: os.path.join(old, "roles", "adopt_module", "files"),
            "now": os.path.join(REPO, "roles", "adopt_module", "files")}
    for directory in dirs.values():
        subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q",
                        os.path.join(directory, "slurm_adopt")], check=True,
                       stdout=subprocess.DEVNULL)
    user = lab.user("alice")
    results = {name: [] for name in dirs}
    with lab.lock():
        lab.ensure_up(timeout=60)
        job = lab.submit("alice")
        try:
            step = lab.extern_socket(job)
            for rnd in range(args.rounds + 2):
                for name, directory in (list(dirs.items())[::1 if rnd % 2 else -1]):
                    s = sample(directory, lab, user, step)
                    if s["job"] != job:
                        raise SystemExit("version %s decided %s, not job %d" % (name, s, job))
                    if rnd >= 2:
                        results[name].append(s["ms"])
        finally:
            lab.cancel(job)
    subprocess.run(["rm", "-rf", old], check=False)
    keys = ["import_ms", "modules_package", "modules_all", "flow_ms", "stepd_connections",
            "connection_ms", "netinfo_self_ms", "netinfo_proc_ms"]
    table = {name: {k: statistics.median(r[k] for r in rows) for k in keys}
             for name, rows in results.items()}
    print("%-10s" % "version" + "".join("%18s" % k for k in keys))
    for name, row in table.items():
        print("%-10s" % name + "".join("%18.2f" % row[k] for k in keys))
    print("(medians of %d fresh interpreters each, interleaved; load %s)"
          % (args.rounds, " ".join("%.1f" % x for x in os.getloadavg())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "before": args.before, "medians": table,
                       "samples": results, "load": os.getloadavg()}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
