# SPDX-License-Identifier: GPL-3.0-or-later
"""X11 for real, with SchedMD's C module as the oracle in the same run.

The lab runs with ``PrologFlags=Contain,X11`` for the length of this file
(Lab.slurm_conf_variant: slurmctld and slurmd restart, and again to switch
back), an Xvfb display in the lab's root, and an interactive allocation
``salloc --x11`` started from a session whose DISPLAY points at it, with an
xauth cookie. The extern slurmstepd opens the forwarding listener
(localhost:<20..99>) and writes a node-local xauthority file. The adopted
ssh session must get DISPLAY=localhost:<N>.0 and XAUTHORITY=<that file> from
our module exactly as from the C module (through sshd, through a direct PAM
call, and through the service interface), and the display must answer
through them.
"""

import os
import re
import secrets
import subprocess

import pytest

import labctl
import pamdrv
from session_probe import log_lines_since, session, slurmd_log
from test_service_differential import svc, through_service  # noqa: F401  (fixtures)

pytestmark = pytest.mark.node

XVFB_DISPLAY = 47             # Xvfb :47, a unix socket in the lab root's /tmp/.X11-unix


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


def pam_calls(lab, user, **kw):
    """One direct PAM account call (tests/node/pamdrv.py) through each of
    the driver's c and py services."""
    got = {}
    for kind in ("c", "py"):
        pamdrv.write_service(lab, kind)
        got[kind] = pamdrv.call(lab, kind, user, **kw)
    return got


def check_pam_environment(lab, x11_job, got):
    job, display, xauthority = x11_job
    want = {"SLURM_JOB_ID": str(job), "DISPLAY": "localhost:%d.0" % display,
            "XAUTHORITY": xauthority}
    for kind, call in got.items():
        assert call.rc_name == "PAM_SUCCESS" and call.job == job, (kind, call)
        assert call.outcome()["env"] == want, (kind, call)
        assert call.elapsed < 15, (kind, call.elapsed)


@pytest.mark.timeout(240)
def test_x11_pam_environment_direct(lab, x11_job):
    """The PAM environment itself (sshd only passes it on): pam_python's and
    the C module's, through a direct PAM call."""
    pamdrv.install(lab)
    try:
        got = pam_calls(lab, "alice")
    finally:
        pamdrv.remove_services(lab)
    check_pam_environment(lab, x11_job, got)


@pytest.mark.timeout(240)
def test_x11_pam_environment_through_the_service(through_service, x11_job):  # noqa: F811
    """The same through the service interface: the driver's "py" service
    loads the C client, which asks the adoption service."""
    lab = through_service
    check_pam_environment(lab, x11_job, pam_calls(lab, "alice"))
