# SPDX-License-Identifier: GPL-3.0-or-later
"""X11 and join_container for real, through sshd, with SchedMD's C module as
the oracle in the same run.

Each group switches its lab to a slurm.conf variant for the length of the
group and back (Lab.slurm_conf_variant: slurmctld and slurmd restart twice),
so the other node tests keep the labs' plain configuration:

- X11: ``PrologFlags=Contain,X11``, an Xvfb display in the lab's root and an
  interactive allocation ``salloc --x11`` started from a session whose DISPLAY
  points at it, with an xauth cookie. The extern slurmstepd opens the
  forwarding listener (localhost:<20..99>) and writes a node-local xauthority
  file; the adopted ssh session must get DISPLAY=localhost:<N>.0 and
  XAUTHORITY=<that file> from the module, exactly as from the C module, and
  the display must answer through them.
- join_container: the job container plugin (job_container/tmpfs up to 25.05,
  namespace/tmpfs from 25.11; job_container.conf in both) gives the job a
  private /tmp. A marker the job writes there must be seen by the sessions
  both modules adopt, which must be in the job's mount namespace, and must
  not be seen by a session outside the job.
"""

import os
import re
import secrets
import shlex
import subprocess
import time

import pytest

import labctl

pytestmark = pytest.mark.node

XVFB_DISPLAY = 47             # Xvfb :47, a unix socket in the lab root's /tmp/.X11-unix
LOGIN_TIMEOUT = 30            # seconds, each ssh login (the lab's ssh() kills it after that)

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


def session(lab, kind, user, command="", **kw):
    """One timed ssh login running SESSION_PROBE (then command)."""
    remote = "python3 -c %s" % shlex.quote(SESSION_PROBE)
    if command:
        remote += "; " + command
    t0 = time.monotonic()
    r = lab.ssh(kind, user, remote, timeout=LOGIN_TIMEOUT, **kw)
    r.seconds = time.monotonic() - t0
    r.vars = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", r.stdout, re.M))
    return r


def slurmd_log(lab):
    return lab.host_path(lab.conf_value("SlurmdLogFile"))


def log_lines_since(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace").splitlines()


# --------------------------------------------------------------------------- X11

class Xvfb(object):
    """An Xvfb display in the lab's root, with its cookie, and a copy of the
    cookie in a user's xauthority file (what an X session gives a user)."""

    def __init__(self, lab, user):
        self.lab = lab
        self.user = lab.user(user)
        self.cookie = secrets.token_hex(16)
        self.server_auth = "/root/.slurm-adopt-lab-xvfb.auth"
        self.user_auth = "/tmp/slurm-adopt-lab-%s.xauth" % self.user
        self.proc = None

    def __enter__(self):
        lab, n = self.lab, XVFB_DISPLAY
        socket_path = lab.host_path("/tmp/.X11-unix/X%d" % n)
        if os.path.exists(socket_path):
            raise labctl.LabError("%s exists: another X server has display :%d" % (socket_path, n))
        for path in (self.server_auth, self.user_auth):
            if os.path.exists(lab.host_path(path)):
                os.unlink(lab.host_path(path))
        lab.run(["xauth", "-q", "-f", self.server_auth, "add", ":%d" % n, "MIT-MAGIC-COOKIE-1",
                 self.cookie])
        lab.run(["xauth", "-q", "-f", self.user_auth, "add", ":%d" % n, "MIT-MAGIC-COOKIE-1",
                 self.cookie], user=self.user)
        self.proc = subprocess.Popen(
            lab.command(["Xvfb", ":%d" % n, "-nolisten", "tcp", "-auth", self.server_auth,
                         "-screen", "0", "320x200x8"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, cwd="/")
        labctl._wait(lambda: os.path.exists(socket_path) or self.proc.poll() is not None, 20,
                     "Xvfb :%d" % n)
        if self.proc.poll() is not None:
            raise labctl.LabError("Xvfb exited %s: %s" % (self.proc.returncode,
                                                          self.proc.stderr.read()[-2000:]))
        return self

    def env(self):
        return ["DISPLAY=:%d" % XVFB_DISPLAY, "XAUTHORITY=%s" % self.user_auth]

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for path in (self.server_auth, self.user_auth):
            if os.path.exists(self.lab.host_path(path)):
                os.unlink(self.lab.host_path(path))


def localhost_has_v6(lab):
    """The lab's /etc/hosts names ::1 localhost."""
    with open(lab.host_path("/etc/hosts")) as f:
        return any(line.split()[:1] == ["::1"] and "localhost" in line.split()[1:]
                   for line in f)


@pytest.fixture(scope="module")
def x11_job(lab):
    """(job, display, xauthority): an X11 allocation of alice, with what its
    extern slurmstepd reported in slurmd.log (SlurmdDebug=debug in the
    variant, for the xauthority line)."""
    with lab.slurm_conf_variant({"PrologFlags": "Contain,X11", "SlurmdDebug": "debug"}):
        with Xvfb(lab, "alice") as xvfb:
            log = slurmd_log(lab)
            offset = os.path.getsize(log)
            job, salloc = lab.start_salloc("alice", ["--x11", "-N1", "-n1"], env=xvfb.env())
            try:
                lines = labctl._wait(lambda: _x11_lines(log, offset, job), 20,
                                     "the X11 lines of job %d in %s" % (job, log))
                yield job, lines[0], lines[1]
            finally:
                lab.cancel(job)
                labctl.stop_salloc(salloc)


def _x11_lines(log, offset, job):
    display = xauth = None
    for line in log_lines_since(log, offset):
        if "[%d.extern]" % job not in line:
            continue
        m = re.search(r"X11 forwarding established on DISPLAY=[^:\s]+:(\d+)\.0", line)
        if m:
            display = int(m.group(1))
        m = re.search(r"x11 forwarding local xauthority is (\S+)", line)
        if m:
            xauth = m.group(1)
    return (display, xauth) if display and xauth else None


@pytest.mark.timeout(240)
def test_x11_display_and_xauthority_as_the_c_module(lab, x11_job):
    job, display, xauthority = x11_job
    # what the extern stepd set up: a display of its listener range, a node-local file
    assert 20 <= display <= 99, display
    assert re.match(r"^/tmp/\.Xauthority-[A-Za-z0-9]{6}$", xauthority), xauthority
    got = {kind: session(lab, kind, "alice") for kind in ("c", "py")}
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r.rc, r.job_id, r.stdout, r.stderr)
        assert r.seconds < 15, (kind, r.seconds)
        assert r.vars["DISPLAY"] == "localhost:%d.0" % display, (kind, r.vars)
        assert r.vars["XAUTHORITY"] == xauthority, (kind, r.vars)
        # the cookie the stepd wrote is for this display, and the display answers
        assert r.vars.get("XAUTH_ENTRY", "").endswith(":%d" % display), (kind, r.stdout)
        assert r.vars.get("X11_SETUP") == "1", (kind, r.stdout, r.stderr)
        # With CommunicationParameters=EnableIPv6 the stepd listens on ::1 only:
        # "localhost" reaches it only where it resolves to ::1 (lab/README.md)
        assert (r.vars["X11_CONNECT_LOCALHOST"] == "ok") == localhost_has_v6(lab), (kind, r.vars)
    same = ("DISPLAY", "XAUTHORITY", "XAUTH_ENTRY", "X11_SETUP", "X11_CONNECT_LOCALHOST")
    assert {k: got["py"].vars.get(k) for k in same} == {k: got["c"].vars.get(k) for k in same}


@pytest.mark.timeout(240)
def test_x11_disable_x11_leaves_the_display_out(lab, x11_job):
    """disable_x11=1: adopted, but neither module hands out DISPLAY or XAUTHORITY."""
    job = x11_job[0]
    got = {}
    for kind in ("c", "py"):
        lab.set_account_options(kind, "disable_x11=1")
        try:
            got[kind] = session(lab, kind, "alice")
        finally:
            lab.restore_account_line(kind)
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r)
        assert r.vars["DISPLAY"] == "" and r.vars["XAUTHORITY"] == "", (kind, r.vars)


# --------------------------------------------------------------------------- join_container

# Measured on the trixie (24.11) and sid (26.05) labs: the extern step fails
# to start ("[J.extern] error: _create_ns: Failed to make root private:
# Invalid argument" in slurmd.log; the job is requeued held), because a
# chroot directory is not a mount point. And even on a root that is one,
# setns(CLONE_NEWNS) puts the joining process at the root of the namespace's
# root mount, which is the machine's /, not the chroot: the job's /tmp would
# be <chroot>/tmp there. Only the host lab (22.05) can run these.
CHROOT_NO_CONTAINER = ("job_container/tmpfs and namespace/tmpfs need a lab whose root is the root "
                       "of its mount namespace; this lab is a chroot (lab/README.md)")


def container_settings(lab):
    """The job container plugin of the lab's Slurm: job_container/tmpfs up to
    25.05; from 25.11 the namespace plugins (JobContainerType is then only an
    alias that slurmctld warns about). job_container.conf in both."""
    key, plugin = (("NamespaceType", "namespace/tmpfs") if version(lab) >= (25, 11)
                   else ("JobContainerType", "job_container/tmpfs"))
    base = os.path.join(os.path.dirname(lab.spool_dir), "slurm-adopt-lab-jobns")
    return {"PrologFlags": "Contain", key: plugin}, {
        "job_container.conf": "# written by tests/node/test_x11_container.py\n"
                              "AutoBasePath=true\nBasePath=%s\n" % base}


@pytest.fixture(scope="module")
def container_job(lab):
    """(job, marker name, marker text, the job's mount namespace)."""
    if lab.root != "/":
        pytest.skip(CHROOT_NO_CONTAINER)
    settings, files = container_settings(lab)
    marker = "slurm-adopt-marker-%s" % secrets.token_hex(4)
    text = secrets.token_hex(8)
    with lab.slurm_conf_variant(settings, files):
        job = lab.submit("alice", before="echo %s > /tmp/%s" % (text, marker))
        try:
            def in_job():
                p = lab.run(["srun", "--jobid=%d" % job, "--overlap", "-N1", "-n1", "--quiet",
                             "sh", "-c", "cat /tmp/%s; readlink /proc/self/ns/mnt" % marker],
                            user="alice", check=False)
                return p.stdout.split() if p.returncode == 0 else None
            seen = labctl._wait(in_job, 20, "the marker of job %d in its /tmp" % job, 0.5)
            assert seen[0] == text, seen
            yield job, marker, text, seen[1]
        finally:
            lab.cancel(job)


@pytest.mark.timeout(300)
def test_join_container_sees_the_jobs_tmp_as_the_c_module(lab, container_job):
    job, marker, text, job_ns = container_job
    own_ns = "mnt:[%d]" % os.stat("/proc/self/ns/mnt").st_ino
    assert job_ns != own_ns                          # the plugin made a namespace of its own
    read = "echo MARKER=$(cat /tmp/%s 2>/dev/null)" % marker
    got = {kind: session(lab, kind, "alice", read) for kind in ("plain", "c", "py")}
    outside = got.pop("plain")
    assert outside.rc == 0 and outside.job_id is None, outside
    assert outside.vars["MARKER"] == "" and outside.vars["MNTNS"] != job_ns, outside.vars
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r)
        assert r.seconds < 15, (kind, r.seconds)
        assert r.vars["MNTNS"] == job_ns, (kind, r.vars)
        assert r.vars["MARKER"] == text, (kind, r.vars, r.stderr)
    assert got["py"].vars["MARKER"] == got["c"].vars["MARKER"]


@pytest.mark.timeout(300)
def test_join_container_false_stays_outside(lab, container_job):
    """join_container=false (24.11.2+ spells it so; 22.05 compares the first
    19 characters, so the same word works there): adopted, but in sshd's own
    mount namespace, without the job's /tmp."""
    job, marker, _text, job_ns = container_job
    got = {}
    for kind in ("c", "py"):
        lab.set_account_options(kind, "join_container=false")
        try:
            got[kind] = session(lab, kind, "alice", "echo MARKER=$(cat /tmp/%s 2>/dev/null)"
                                % marker)
        finally:
            lab.restore_account_line(kind)
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r)
        assert r.vars["MNTNS"] != job_ns and r.vars["MARKER"] == "", (kind, r.vars)
