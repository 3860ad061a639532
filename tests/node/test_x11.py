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

import contextlib
import os
import re
import secrets
import subprocess
import time

import pytest

import labctl
import pamdrv
from session_probe import LOGIN_BOUND, log_lines_since, session, slurmd_log, version
from test_service_differential import svc, through_service  # noqa: F401 (fixtures)  # pylint: disable=unused-import

pytestmark = pytest.mark.node

XVFB_DISPLAY = 47             # Xvfb :47, a unix socket in the lab root's /tmp/.X11-unix


class Xvfb(object):
    """An Xvfb display in the lab's root, with its cookie, and a copy of the
    cookie in each user's xauthority file (what an X session gives a user)."""

    def __init__(self, lab, users):
        self.lab = lab
        self.users = [lab.user(u) for u in users]
        self.cookie = secrets.token_hex(16)
        self.server_auth = "/root/.slurm-adopt-lab-xvfb.auth"
        self.user_auth = {u: "/tmp/slurm-adopt-lab-%s.xauth" % u for u in self.users}
        self.proc = None

    def __enter__(self):
        lab, n = self.lab, XVFB_DISPLAY
        socket_path = lab.host_path("/tmp/.X11-unix/X%d" % n)
        if os.path.exists(socket_path):
            raise labctl.LabError("%s exists: another X server has display :%d" % (socket_path, n))
        self._remove_files()
        lab.run(["xauth", "-q", "-f", self.server_auth, "add", ":%d" % n, "MIT-MAGIC-COOKIE-1",
                 self.cookie])
        for user, path in self.user_auth.items():
            lab.run(["xauth", "-q", "-f", path, "add", ":%d" % n, "MIT-MAGIC-COOKIE-1",
                     self.cookie], user=user)
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

    def env(self, user):
        return ["DISPLAY=:%d" % XVFB_DISPLAY, "XAUTHORITY=%s" % self.user_auth[self.lab.user(user)]]

    def _remove_files(self):
        for path in [self.server_auth, *self.user_auth.values()]:
            if os.path.exists(self.lab.host_path(path)):
                os.unlink(self.lab.host_path(path))

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._remove_files()


def localhost_has_v6(lab):
    """The lab's /etc/hosts names ::1 localhost."""
    with open(lab.host_path("/etc/hosts")) as f:
        return any(line.split()[:1] == ["::1"] and "localhost" in line.split()[1:]
                   for line in f)


@pytest.fixture(scope="module")
def x11_lab(lab):
    """The lab in its X11 variant (SlurmdDebug=debug for the stepd's
    xauthority line), with an Xvfb display alice and bob may use."""
    with lab.slurm_conf_variant({"PrologFlags": "Contain,X11", "SlurmdDebug": "debug"}):
        with Xvfb(lab, ("alice", "bob")) as xvfb:
            yield xvfb


@contextlib.contextmanager
def x11_allocation(lab, xvfb, user):
    """(job, display, xauthority): an X11 allocation of user, with what its
    extern slurmstepd reported in slurmd.log."""
    log = slurmd_log(lab)
    offset = os.path.getsize(log)
    job, salloc = lab.start_salloc(user, ["--x11", "-N1", "-n1"], env=xvfb.env(user))
    try:
        lines = labctl._wait(lambda: _x11_lines(log, offset, job), 20,
                             "the X11 lines of job %d in %s" % (job, log))
        yield job, lines[0], lines[1]
    finally:
        lab.cancel(job)
        labctl.stop_salloc(salloc)


@pytest.fixture(scope="module")
def x11_job(lab, x11_lab):
    with x11_allocation(lab, x11_lab, "alice") as job:
        yield job


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
        assert r.seconds < LOGIN_BOUND, (kind, r.seconds)
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
        assert call.elapsed < LOGIN_BOUND, (kind, call.elapsed)


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


HANG_PROBE = 12       # seconds: a login the C module of 25.11+ never finishes here


def module_lines(lab, mark):
    time.sleep(0.5)                           # the module's last lines reach the log
    return [line for line in lab.syslog_since(mark) if "pam_slurm_adopt" in line]


@pytest.mark.timeout(240)
def test_x11_job_from_inside_it_when_another_job_is_newer(lab, x11_lab):
    """docs/differences.md row 2, for real: bob has an X11 allocation and a
    newer batch job, and logs in from inside the X11 one (callerid RPC path).
    The C module reads the X11 reply only in part there (stepd protocol
    version 0: DISPLAY is set, the xauthority length and path stay unread),
    and its namespace request reads them as its answer:
    - up to 25.05 (REQUEST_GET_NS_FD), the length is taken for an fd number,
      the fd never comes, the adoption into the RPC's job fails and the C
      module goes on to action_unknown=newest, which may pick the other job:
      the session then has the X11 job's DISPLAY and no XAUTHORITY;
    - from 25.11 (REQUEST_GET_NS_FDS), the length is taken for a count of
      namespaces, the path's bytes are misread as some of them, and then the
      C module waits for the rest, which never come: the login hangs.
    Ours adopts into the job the RPC named, with its DISPLAY and XAUTHORITY."""
    with x11_allocation(lab, x11_lab, "bob") as (x11, display, xauthority):
        time.sleep(1.1)                       # distinct socket ctimes (26.05's "newest")
        newer = lab.submit("bob")
        try:
            mark = lab.syslog_mark()
            py = session(lab, "py", "bob", via_job=x11)
            py.syslog = module_lines(lab, mark)
            mark = lab.syslog_mark()
            if version(lab) >= (25, 11):
                with pytest.raises(labctl.LabTimeout):
                    session(lab, "c", "bob", via_job=x11, timeout=HANG_PROBE)
                c = None
            else:
                c = session(lab, "c", "bob", via_job=x11)
            c_syslog = module_lines(lab, mark)
        finally:
            lab.cancel(newer)
    assert py.rc == 0 and py.job_id == x11, (py.rc, py.job_id, py.stderr)
    assert py.seconds < LOGIN_BOUND, py.seconds
    assert py.vars["DISPLAY"] == "localhost:%d.0" % display, py.vars
    assert py.vars["XAUTHORITY"] == xauthority, py.vars
    assert any("adopted into job %d" % x11 in line for line in py.syslog), py.syslog
    assert not any(re.search(r"adoption FAILED|CMSG_FIRSTHDR|stepd_get_ns|setns", line)
                   for line in py.syslog), py.syslog
    # the C module misreads the rest of the X11 reply as namespace fds
    assert any("CMSG_FIRSTHDR failed" in line for line in c_syslog), c_syslog
    if c is None:                             # 25.11+: hung, nothing adopted, no decision
        assert not any(re.search(r"adopted into job|adoption FAILED|Picked job", line)
                       for line in c_syslog), c_syslog
        return
    assert any(re.search(r"Process \d+ adoption FAILED for job %d$" % x11, line)
               for line in c_syslog), c_syslog
    assert any("action_unknown: Picked job" in line for line in c_syslog), c_syslog
    assert c.rc == 0 and c.job_id in (x11, newer), (c.rc, c.job_id)
    assert c.vars["DISPLAY"] == py.vars["DISPLAY"], c.vars     # from the first, failed try
    if c.job_id == newer:                     # a job without X11: no xauthority
        assert c.vars["XAUTHORITY"] == "", c.vars
    else:                                     # the second, full adoption gives both
        assert c.vars["XAUTHORITY"] == py.vars["XAUTHORITY"], c.vars
