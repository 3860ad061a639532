# SPDX-License-Identifier: GPL-3.0-or-later
"""What an ssh session got, for tests/node/test_x11.py and
test_join_container.py: one timed login through a lab sshd that runs a
small Python probe in the session (DISPLAY, XAUTHORITY, the mount
namespace, an X11 connection setup through DISPLAY), and slurmd.log."""

import re
import shlex
import time

LOGIN_TIMEOUT = 30            # seconds, each ssh login (the lab's ssh() kills it after that)
# A login that did not hang ends within this (the module's own budget is 20 s);
# generous, since CI runs the node stage beside molecule on 2 CPUs, where
# logins slow down (the tests check that nothing hangs, not how fast it is)
LOGIN_BOUND = 25

# Run in the ssh session: what the session got, and an X11 connection setup
# through DISPLAY with the cookie of XAUTHORITY (first reply byte 1: the
# server accepted it). Python 3.6+ (every lab's python3).
SESSION_PROBE = r"""
import os, socket, struct, subprocess
d = os.environ.get("DISPLAY", "")
print("DISPLAY=" + d)
print("XAUTHORITY=" + os.environ.get("XAUTHORITY", ""))
print("MNTNS=" + os.readlink("/proc/self/ns/mnt"))
m = __import__("re").match(r"localhost:(\d+)\.0$", d)
if m:
    n = int(m.group(1))
    out = subprocess.run(["xauth", "list"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    cookie = None
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].endswith(":%d" % n) and f[1] == "MIT-MAGIC-COOKIE-1":
            cookie = bytes.fromhex(f[2])
            print("XAUTH_ENTRY=" + f[0])
    s = None
    for host in ("localhost", "::1"):   # an X client resolves localhost; Slurm may bind ::1 only
        try:
            s = socket.create_connection((host, 6000 + n), 10)
            print("X11_CONNECT_%s=ok" % ("LOCALHOST" if host == "localhost" else "V6LOOP"))
            break
        except OSError as exc:
            print("X11_CONNECT_%s=%s" % ("LOCALHOST" if host == "localhost" else "V6LOOP",
                                         exc.__class__.__name__))
    if cookie and s:
        s.settimeout(10)
        name = b"MIT-MAGIC-COOKIE-1"
        s.sendall(struct.pack("<BxHHHHxx", 0x6C, 11, 0, len(name), len(cookie))
                  + name + b"\0" * (-len(name) % 4) + cookie)
        print("X11_SETUP=%d" % s.recv(8)[0])
"""


def version(lab):
    return tuple(int(x) for x in lab.slurm_version.split(".")[:2])


def session(lab, kind, user, command="", timeout=LOGIN_TIMEOUT, **kw):
    """One timed ssh login running SESSION_PROBE (then command); LabTimeout
    when it takes more than timeout seconds."""
    remote = "python3 -c %s" % shlex.quote(SESSION_PROBE)
    if command:
        remote += "; " + command
    t0 = time.monotonic()
    r = lab.ssh(kind, user, remote, timeout=timeout, **kw)
    r.seconds = time.monotonic() - t0
    r.vars = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", r.stdout, re.M))
    return r


def slurmd_log(lab):
    return lab.host_path(lab.conf_value("SlurmdLogFile"))


def log_lines_since(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace").splitlines()
