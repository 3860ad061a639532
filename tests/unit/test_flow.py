# SPDX-License-Identifier: GPL-3.0-or-later
"""The decision flow, end to end in-process, with fake stepds for each version.

The real flow against real Slurm is in tests/node; this covers what cannot
run here (23.02 ... 26.05 stepds) and the faults."""

import os
import pwd
import socket
import time

import pytest

from fakes.fake_stepd import FakeStepd
from slurm_adopt import constants as C
from slurm_adopt import flow as flow_mod
from slurm_adopt.callerid import CallerConn
from slurm_adopt.flow import Adopter, PamContext, run_safely
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options

NODE = "nodeA"
USER = "nobody"
OTHER = "daemon"
UID = pwd.getpwnam(USER).pw_uid
OTHER_UID = pwd.getpwnam(OTHER).pw_uid


class Ctx(PamContext):
    can_setns = True

    def __init__(self, user=USER, service="sshd"):
        self.user = user
        self.service = service
        self.pid = 54321
        self.messages = []
        self.env = {}
        self.conn = CallerConn(socket.inet_aton("127.0.0.1") + b"\0" * 12, 40000,
                               socket.inet_aton("127.0.0.1") + b"\0" * 12, 22, socket.AF_INET)

    def send_user_msg(self, text):
        self.messages.append(text)

    def putenv(self, name, value):
        self.env[name] = value

    def netinfo(self):
        return self.conn


class Node(object):
    """A temporary slurm.conf, spool dir and cgroup tree with fake stepds."""

    def __init__(self, tmp_path, cgroup="cgroup/v2"):
        self.tmp = tmp_path
        self.spool = tmp_path / "spool"
        self.spool.mkdir()
        self.cg = tmp_path / "cg"
        self.cg.mkdir()
        self.conf = tmp_path / "slurm.conf"
        self.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\n" % (NODE, self.spool))
        (tmp_path / "cgroup.conf").write_text(
            "CgroupPlugin=%s\nCgroupMountpoint=%s\nConstrainRAMSpace=yes\n" % (cgroup, self.cg))
        self.stepds = []
        self.rpc_calls = []

    def job(self, job_id, uid=UID, **kw):
        fake = FakeStepd(str(self.spool), NODE, job_id, uid, **kw)
        self.stepds.append(fake)
        return fake

    def cgroup_mtime(self, job_id, mtime, uid=UID):
        path = self.cg / "memory" / ("slurm_%s" % NODE) / ("uid_%d" % uid) / ("job_%d" % job_id)
        path.mkdir(parents=True, exist_ok=True)
        os.utime(str(path), (mtime, mtime))

    def run(self, *args, ctx=None, rpc=None):
        ctx = ctx or Ctx()
        opts = parse_options(["nodename=%s" % NODE] + list(args))
        log = Log(to_syslog=False)
        adopter = Adopter(opts, ctx, log, environ={"SLURM_CONF": str(self.conf)})

        def fake_rpc(conn, port, version, munge_socket, timeout, end, log, **kwargs):
            self.rpc_calls.append(version)
            if isinstance(rpc, Exception):
                raise rpc
            return (rpc if rpc is not None else C.NO_VAL), "remote"
        flow_mod.callerid_rpc = fake_rpc
        rc = run_safely(adopter)
        return rc, ctx, adopter, log

    def close(self):
        for fake in self.stepds:
            fake.close()


@pytest.fixture
def node(tmp_path, monkeypatch):
    monkeypatch.setattr(flow_mod, "callerid_rpc", flow_mod.callerid_rpc)
    n = Node(tmp_path)
    yield n
    n.close()


@pytest.fixture
def node_v1(tmp_path, monkeypatch):
    monkeypatch.setattr(flow_mod, "callerid_rpc", flow_mod.callerid_rpc)
    n = Node(tmp_path, cgroup="cgroup/v1")
    yield n
    n.close()


def adopted(fake):
    return fake.added == [54321]


# -- before any Slurm work ------------------------------------------------------

def test_other_service_is_ignored_before_anything_else(node):
    node.conf.write_text("broken line\n")
    rc, ctx, _adopter, log = node.run(ctx=Ctx(service="login"))
    assert rc == C.PAM_IGNORE and ctx.messages == []
    assert "not an allowed pam service" in log.lines[-1][1]


def test_service_option_and_star(node):
    fake = node.job(5)
    assert node.run("service=login", ctx=Ctx(service="login"))[0] == C.PAM_SUCCESS
    assert node.run("service=*", ctx=Ctx(service="cron"))[0] == C.PAM_SUCCESS
    assert len(fake.added) == 2


def test_no_user_and_unknown_user(node):
    assert node.run(ctx=Ctx(user=None))[0] == C.PAM_SESSION_ERR
    assert node.run(ctx=Ctx(user="no-such-user-xyz"))[0] == C.PAM_SESSION_ERR


@pytest.mark.parametrize("extra", [[], ["ignore_root=0", "action_generic_failure=deny"]])
def test_root_is_ignored_even_with_a_broken_config(node, extra):
    node.conf.write_text("garbage\n")
    rc, ctx, _adopter, _log = node.run(*extra, ctx=Ctx(user="root"))
    assert rc == C.PAM_IGNORE and ctx.messages == []


@pytest.mark.parametrize("action,rc", [("deny", C.PAM_PERM_DENIED), ("allow", C.PAM_SUCCESS),
                                       ("ignore", C.PAM_IGNORE)])
def test_broken_config_applies_action_generic_failure(node, action, rc):
    node.conf.write_text("NodeName=%s\nthis line is broken\n" % NODE)
    got, ctx, _adopter, log = node.run("action_generic_failure=" + action)
    assert got == rc
    assert any("cannot parse" in text and "action_generic_failure=" + action in text
               for _level, text in log.lines)


# -- counting jobs ---------------------------------------------------------------

def test_no_jobs_denies_with_the_c_message(node):
    node.job(9, uid=OTHER_UID)                      # another user's job does not count
    rc, ctx, _adopter, _log = node.run()
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]


def test_no_jobs_ignore(node):
    rc, ctx, _adopter, _log = node.run("action_no_jobs=ignore")
    assert rc == C.PAM_IGNORE and ctx.messages == []


def test_missing_spool_dir_is_zero_jobs(node):
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=/nonexistent/spool\n" % NODE)
    rc, ctx, _adopter, _log = node.run()
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]


def test_non_extern_steps_do_not_count(node):
    node.job(3, step_id=0)
    rc, _ctx, _adopter, _log = node.run()
    assert rc == C.PAM_PERM_DENIED


# -- one job ----------------------------------------------------------------------

@pytest.mark.parametrize("version", [0x2600, 0x2A00, 0x2C00, 0x2D00])
def test_one_job_is_adopted_with_environment(node, version):
    fake = node.job(17, version=version, x11=(11, "/home/x/.Xauthority"))
    rc, ctx, adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(fake)
    assert ctx.env == {"SLURM_JOB_ID": "17", "DISPLAY": "localhost:11.0",
                       "XAUTHORITY": "/home/x/.Xauthority"}
    assert node.rpc_calls == []                      # the fast path skips the RPC
    assert adopter.adopted_job == 17


def test_disable_x11(node):
    node.job(17, x11=(11, "/x"))
    _rc, ctx, _adopter, _log = node.run("disable_x11=1")
    assert ctx.env == {"SLURM_JOB_ID": "17"}


@pytest.mark.parametrize("version,message", [(0x2600, C.MSG_ADOPT_FAILED_LEGACY),
                                             (0x2A00, C.MSG_ADOPT_FAILED_LEGACY),
                                             (0x2D00, C.MSG_ADOPT_FAILED_26_05)])
def test_one_job_adoption_failure(node, version, message):
    node.job(17, version=version, add_rc=-1)
    rc, ctx, _adopter, _log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [message]
    rc, ctx, _adopter, _log = node.run()                       # default: allow
    assert rc == C.PAM_SUCCESS and ctx.messages == []
    assert "SLURM_JOB_ID" not in ctx.env


def test_adoption_failure_when_step_ends_during_adoption(node):
    node.job(17, version=0x2A00, behaviour="ending")
    rc, ctx, _adopter, _log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED


def test_single_job_skip_rpc_0_asks_the_rpc_and_then_action_unknown(node):
    fake = node.job(17)
    rc, ctx, _adopter, _log = node.run("single_job_skip_rpc=0", "action_unknown=deny")
    assert node.rpc_calls == [0x2600]
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_UNKNOWN_SOURCE]
    assert fake.added == []


def test_single_job_skip_rpc_0_on_26_05_adopts_the_only_job(node):
    fake = node.job(17, version=0x2D00)
    rc, ctx, _adopter, _log = node.run("single_job_skip_rpc=0", "action_unknown=deny")
    assert node.rpc_calls == [0x2D00]
    assert rc == C.PAM_SUCCESS and adopted(fake)


# -- several jobs -------------------------------------------------------------------

def test_rpc_names_the_job(node):
    a, b = node.job(20), node.job(21)
    rc, ctx, _adopter, _log = node.run(rpc=20)
    assert rc == C.PAM_SUCCESS and adopted(a) and b.added == []
    assert ctx.env["SLURM_JOB_ID"] == "20"


def test_rpc_job_of_another_user_is_not_adopted(node):
    """C module bug: it adopts into whatever job the remote slurmd names."""
    mine_old, mine_new = node.job(20), node.job(22)
    theirs = node.job(21, uid=OTHER_UID)
    rc, _ctx, _adopter, log = node.run("action_unknown=newest", rpc=21)
    assert theirs.added == []
    assert rc == C.PAM_SUCCESS and adopted(mine_new) and mine_old.added == []
    assert any("not a job of" in text for _level, text in log.lines)


def test_rpc_failure_then_action_unknown_allow(node):
    a, b = node.job(20), node.job(21)
    rc, ctx, _adopter, _log = node.run("action_unknown=allow", rpc=C.RpcError("refused"))
    assert rc == C.PAM_SUCCESS and a.added == [] and b.added == [] and ctx.env == {}


def test_rpc_failure_then_action_unknown_deny(node):
    node.job(20)
    node.job(21)
    rc, ctx, _adopter, _log = node.run("action_unknown=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_UNKNOWN_SOURCE]


def test_newest_cgroup_v2_is_the_highest_job_id(node):
    a, b, c = node.job(30), node.job(32), node.job(31)
    rc, _ctx, _adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(b) and a.added == [] and c.added == []


def test_newest_cgroup_v1_is_the_latest_job_cgroup(node_v1):
    a, b = node_v1.job(40), node_v1.job(41)
    node_v1.cgroup_mtime(40, time.time())
    node_v1.cgroup_mtime(41, time.time() - 100)
    rc, _ctx, _adopter, _log = node_v1.run()
    assert rc == C.PAM_SUCCESS and adopted(a) and b.added == []


def test_newest_26_05_is_the_latest_socket(node):
    a = node.job(50, version=0x2D00)
    b = node.job(51, version=0x2D00)
    # ctime cannot be set directly: renaming job 50's socket later gives it the newest ctime
    tmp = a.path + ".tmp"
    os.rename(a.path, tmp)
    time.sleep(1.1)
    os.rename(tmp, a.path)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(a) and b.added == []
    assert any("Newest job 50" in text for _level, text in log.lines)


def test_newest_adoption_failure_legacy_denies_silently(node):
    node.job(60, add_rc=-1)
    node.job(61, add_rc=-1)
    rc, ctx, _adopter, _log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == []


def test_newest_adoption_failure_26_05_says_so(node):
    node.job(60, version=0x2D00, add_rc=-1)
    node.job(61, version=0x2D00, add_rc=-1)
    rc, ctx, _adopter, _log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_ADOPT_FAILED_26_05]


def test_undetectable_cgroup_version_is_session_err(node):
    (node.tmp / "cgroup.conf").write_text("CgroupPlugin=cgroup/v9\n")
    node.job(70)
    node.job(71)
    assert node.run()[0] == C.PAM_SESSION_ERR


# -- faults ---------------------------------------------------------------------------

def test_stopped_stepd_of_the_only_job_applies_generic_failure_in_bounded_time(node, monkeypatch):
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod, "STEPD_TIMEOUT", 0.3)
    node.job(80, behaviour="stopped")
    start = time.monotonic()
    rc, ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert time.monotonic() - start < 3
    assert rc == C.PAM_PERM_DENIED and ctx.messages == []
    assert any("did not answer" in text for _level, text in log.lines)


def test_stopped_stepd_of_another_job_does_not_block_the_users_job(node, monkeypatch):
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod, "STEPD_TIMEOUT", 0.3)
    node.job(81, behaviour="stopped", uid=OTHER_UID)
    mine = node.job(82)
    rc, _ctx, _adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(mine)


def test_stale_socket_is_skipped(node):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(node.spool / ("%s_90.%d" % (NODE, C.SLURM_EXTERN_CONT))))
    s.close()
    rc, ctx, _adopter, _log = node.run()
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]


def test_no_exception_escapes(node):
    class Broken(Ctx):
        def netinfo(self):
            raise RuntimeError("boom")
    node.job(100)
    node.job(101)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=deny", ctx=Broken())
    assert rc == C.PAM_PERM_DENIED
    assert any("unexpected error: RuntimeError: boom" in text for _level, text in log.lines)


def test_munge_failure_is_logged_as_an_error_and_falls_back(node):
    node.job(110)
    newest = node.job(111)
    rc, _ctx, _adopter, log = node.run(rpc=C.MungeError("munged is not reachable at /run/munge/x"))
    assert rc == C.PAM_SUCCESS and adopted(newest)
    assert (C.LOG_LEVEL_ERROR, "From 127.0.0.1 port 40000 as nobody: cannot ask the remote "
            "slurmd: munged is not reachable at /run/munge/x") in log.lines


# -- issue 9 ------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_ten_silent_stepds_of_others_cost_one_timeout_and_the_user_is_adopted(node, monkeypatch):
    """Item 2: with deny/deny, ten stopped stepds of another user neither deny
    the user nor take N timeouts; the adoption keeps its reserved budget."""
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod, "STEPD_TIMEOUT", 0.5)
    for job in range(200, 210):
        node.job(job, uid=OTHER_UID, behaviour="stopped")
    mine = node.job(300)
    start = time.monotonic()
    rc, ctx, _adopter, log = node.run("action_adopt_failure=deny", "action_generic_failure=deny")
    elapsed = time.monotonic() - start
    assert rc == C.PAM_SUCCESS and adopted(mine), log.lines
    assert ctx.env["SLURM_JOB_ID"] == "300"
    assert elapsed < 1.5, elapsed
    assert sum("did not answer within" in text for _l, text in log.lines) == 10


@pytest.mark.timeout(30)
def test_adoption_keeps_its_reserve_when_the_queries_use_up_their_part(node, monkeypatch):
    """The queries may only use the budget before the reserve: a stepd that
    stays silent until then costs the query phase, not the adoption."""
    import slurm_adopt.flow as flow_mod2
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod, "STEPD_TIMEOUT", 10)
    monkeypatch.setattr(flow_mod2, "TOTAL_BUDGET", 2.0)
    monkeypatch.setattr(flow_mod2, "ADOPT_RESERVE", 1.2)
    node.job(201, uid=OTHER_UID, behaviour="stopped")
    mine = node.job(301)
    start = time.monotonic()
    rc, _ctx, adopter, log = node.run("action_adopt_failure=deny")
    assert time.monotonic() - start < 1.6
    assert rc == C.PAM_SUCCESS and adopted(mine)
    assert any("budget of the module exhausted" in text for _l, text in log.lines)


def test_one_job_is_adopted_on_the_connection_of_its_uid_query(node):
    """One stepd connection for the uid query and REQUEST_ADD_EXTERN_PID."""
    fake = node.job(17, x11=(11, "/x"))
    rc, ctx, _adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(fake)
    assert len(fake.client_versions) == 1
    assert fake.requests == [20, 22, 23, 26]


def test_newest_26_05_same_second_goes_to_the_higher_job_id(node):
    """Item 9: whole seconds of the socket ctime, then the highest job id."""
    newer_socket = None
    for _attempt in range(20):
        for fake in node.stepds:
            fake.close()
        node.stepds = []
        high = node.job(20, version=0x2D00)      # created first, higher id
        time.sleep(0.02)
        low = node.job(10, version=0x2D00)       # created 20 ms later, lower id
        if int(os.stat(high.path).st_ctime) == int(os.stat(low.path).st_ctime):
            newer_socket = low
            break
    assert newer_socket is not None
    assert os.stat(low.path).st_ctime_ns > os.stat(high.path).st_ctime_ns
    rc, _ctx, _adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(high) and low.added == []


def test_empty_service_option_never_matches(node):
    """Item 11: service= (empty) matches no service: PAM_IGNORE, as the C module."""
    fake = node.job(5)
    rc, ctx, _adopter, _log = node.run("service=")
    assert rc == C.PAM_IGNORE and fake.added == [] and ctx.messages == []


def test_empty_nodename_option_finds_no_steps(node):
    """Item 11: nodename= (empty) is a name, not "guess": no steps, no jobs."""
    fake = node.job(5)
    opts = parse_options(["nodename="])
    ctx = Ctx()
    rc = run_safely(Adopter(opts, ctx, Log(to_syslog=False), environ={"SLURM_CONF": str(node.conf)}))
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS] and fake.added == []


def test_x11_failure_after_the_adoption_keeps_it(node):
    """Item 10: the stepd added the pid; a broken X11 answer must not turn
    that into a failure (the C module keeps success)."""
    fake = node.job(17, behaviour="x11-broken", x11=(12, None))
    rc, ctx, _adopter, log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_SUCCESS and adopted(fake)
    assert ctx.env == {"SLURM_JOB_ID": "17"}
    assert any("stepd_get_x11_display failed" in text for _l, text in log.lines)


def _uts_of(pid="self"):
    return os.readlink("/proc/%s/ns/uts" % pid)


@pytest.mark.timeout(30)
def test_the_jobs_namespace_is_really_joined(node):
    """setns(2) for real: the fake stepd hands over the UTS namespace of a
    process in a namespace of its own; after the login this process is in
    it. (UTS, because joining it changes nothing else of the test run.)"""
    import subprocess
    if os.getuid() != 0:
        pytest.fail("needs root")
    holder = subprocess.Popen(["unshare", "-u", "sleep", "60"])
    own = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        for _attempt in range(100):
            if _uts_of(holder.pid) != _uts_of():
                break
            time.sleep(0.02)
        ns_fd = os.open("/proc/%d/ns/uts" % holder.pid, os.O_RDONLY)
        fake = node.job(17, version=0x2C00, namespaces=[(0x04000000, ns_fd)])
        rc, _ctx, _adopter, _log = node.run("action_adopt_failure=deny")
        assert rc == C.PAM_SUCCESS and adopted(fake)
        assert _uts_of() == _uts_of(holder.pid)
    finally:
        from slurm_adopt.stepd import setns
        setns(own, 0x04000000)
        os.close(own)
        holder.kill()
        holder.wait()
    assert _uts_of() != "uts:[0]"


def test_a_failed_setns_fails_the_adoption(node):
    """A descriptor that is no namespace: setns() fails, the adoption fails
    and action_adopt_failure applies (never a half-joined session)."""
    r, w = os.pipe()
    try:
        fake = node.job(17, version=0x2600, namespaces=[(0, r)])
        rc, ctx, _adopter, log = node.run("action_adopt_failure=deny")
        assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_ADOPT_FAILED_LEGACY]
        assert fake.added == [54321]
        assert any("setns() failed" in text for _l, text in log.lines)
    finally:
        os.close(r)
        os.close(w)


def test_a_job_that_ends_during_the_login_is_not_picked(node):
    """Item 11: up to 25.11 the C module asks the owners again before it
    picks the newest job."""
    older = node.job(40)
    node.job(41, behaviour="ends-after-query")     # the highest id, gone by pick time
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS and adopted(older)
    assert any("Picked job 40" in text for _l, text in log.lines)


def test_every_job_ended_during_the_login(node):
    node.job(40, behaviour="ends-after-query")
    node.job(41, behaviour="ends-after-query")
    rc, ctx, _adopter, _log = node.run()
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]


def test_a_spool_dir_others_can_write_is_not_trusted(node):
    """Item 7: whoever can create a socket there would be believed."""
    node.job(17)
    os.chmod(str(node.spool), 0o777)
    rc, ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == []
    assert any("not trusting its step sockets" in text for _l, text in log.lines)
    os.chmod(str(node.spool), 0o755)
    assert node.run("action_generic_failure=deny")[0] == C.PAM_SUCCESS


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_spool_dir_may_belong_to_slurmuser_but_no_other_user(node):
    """Debian's slurmd package gives SlurmdSpoolDir to SlurmUser: trusted,
    as SlurmUser's stepd answers are. Any other owner is not."""
    node.job(17)
    os.chown(str(node.spool), OTHER_UID, -1)
    try:
        rc, _ctx, _adopter, log = node.run("action_generic_failure=deny")
        assert rc == C.PAM_PERM_DENIED
        assert any("owned by uid %d" % OTHER_UID in text for _l, text in log.lines)
        node.conf.write_text(node.conf.read_text() + "SlurmUser=%d\n" % OTHER_UID)
        assert node.run("action_generic_failure=deny")[0] == C.PAM_SUCCESS
    finally:
        os.chown(str(node.spool), 0, -1)


def test_rpc_skipped_under_auth_slurm_then_newest(node):
    """Item 5: auth/slurm is not spoken: one error line, then as for an
    unknown source."""
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\nAuthType=auth/slurm\n" % (NODE, node.spool))
    node.job(20)
    newest = node.job(21)
    rc, _ctx, _adopter, log = node.run(rpc=20)
    assert node.rpc_calls == []
    assert rc == C.PAM_SUCCESS and adopted(newest)
    assert sum("AuthType=auth/slurm is not supported" in text for _l, text in log.lines) == 1


def test_rpc_skipped_under_tls(node):
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\nTLSType=tls/s2n\n" % (NODE, node.spool))
    node.job(20)
    node.job(21)
    rc, ctx, _adopter, log = node.run("action_unknown=deny", rpc=20)
    assert node.rpc_calls == [] and rc == C.PAM_PERM_DENIED
    assert ctx.messages == [C.MSG_UNKNOWN_SOURCE]
    assert any("TLSType=tls/s2n is not supported" in text for _l, text in log.lines)


def test_bad_slurmd_port_in_the_rpc_is_an_unknown_source(node):
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\nSlurmdPort=abc\n" % (NODE, node.spool))
    node.job(20)
    node.job(21)
    rc, ctx, _adopter, _log = node.run("action_unknown=deny", "action_generic_failure=allow")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_UNKNOWN_SOURCE]


def test_raw_hostname_fallback_follows_the_stepds_version(node, monkeypatch):
    """Item 4: 23.11+ falls back to the raw host name; 22.05 does not."""
    import slurm_adopt.flow as fm
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "dyn7")
    monkeypatch.setattr(fm.socket, "gethostname", lambda: "dyn7")
    monkeypatch.setattr(sc, "canonical_names", lambda host: [])
    node.conf.write_text("NodeName=elsewhere\nSlurmdSpoolDir=%s\n" % node.spool)
    env = {"SLURM_CONF": str(node.conf)}
    modern = FakeStepd(str(node.spool), "dyn7", 7, UID, version=0x2800)
    try:
        ctx = Ctx()
        rc = run_safely(Adopter(parse_options([]), ctx, Log(to_syslog=False), environ=env))
        assert rc == C.PAM_SUCCESS and modern.added == [54321]
    finally:
        modern.close()
    legacy = FakeStepd(str(node.spool), "dyn7", 8, UID, version=0x2600)
    try:
        ctx = Ctx()
        rc = run_safely(Adopter(parse_options(["action_generic_failure=deny"]), ctx,
                                Log(to_syslog=False), environ=env))
        assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_STEP_LIST]
        assert legacy.added == []
    finally:
        legacy.close()
    ctx = Ctx()             # nothing to ask: the newer rule (no jobs under the raw name)
    rc = run_safely(Adopter(parse_options([]), ctx, Log(to_syslog=False), environ=env))
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]


def test_slurmd_nodename_is_read_only_from_23_11(node, monkeypatch):
    node.conf.write_text("NodeName=%s\nNodeName=other\nSlurmdSpoolDir=%s\n" % (NODE, node.spool))
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(sc.socket, "gethostname", lambda: NODE)
    mine_here = node.job(5, version=0x2600)
    theirs = FakeStepd(str(node.spool), "other", 6, UID, version=0x2600)
    try:
        env = {"SLURM_CONF": str(node.conf), "SLURMD_NODENAME": "other"}
        rc = run_safely(Adopter(parse_options([]), Ctx(), Log(to_syslog=False), environ=env))
        assert rc == C.PAM_SUCCESS and adopted(mine_here) and theirs.added == []
    finally:
        theirs.close()
    modern = FakeStepd(str(node.spool), "other", 9, UID, version=0x2A00)
    try:
        rc = run_safely(Adopter(parse_options([]), Ctx(), Log(to_syslog=False), environ=env))
        assert rc == C.PAM_SUCCESS and modern.added == [54321]
    finally:
        modern.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("threads", [0, 1])
def test_dns_lookup_in_the_node_name_guess_is_bounded(node, monkeypatch, threads):
    """In a child process, or in a thread where the process has threads
    already (the service)."""
    import threading
    import slurm_adopt.flow as fm
    stop = threading.Event()
    for _i in range(threads):
        threading.Thread(target=stop.wait, daemon=True).start()
    monkeypatch.setattr("os.fork", lambda: pytest.fail("forked") if threads else _fork())
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(fm, "DNS_TIMEOUT", 0.3)
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "slowhost")
    monkeypatch.setattr(fm, "canonical_names", lambda host: time.sleep(5) or [])
    node.conf.write_text("NodeName=x NodeHostname=localhost\nSlurmdSpoolDir=%s\n" % node.spool)
    log = Log(to_syslog=False)
    start = time.monotonic()
    run_safely(Adopter(parse_options([]), Ctx(), log, environ={"SLURM_CONF": str(node.conf)}))
    stop.set()
    assert time.monotonic() - start < 2
    assert any("lookup of slowhost did not finish" in text for _l, text in log.lines)


_fork = os.fork


# -- cgroup autodetection (U7, M9) ---------------------------------------------------

def mounts_file(tmp_path, *entries):
    path = tmp_path / ("mounts-%d" % len(list(tmp_path.glob("mounts-*"))))
    path.write_text("".join("none %s %s rw 0 0\n" % entry for entry in entries))
    return str(path)


class _Conf(object):
    def __init__(self, plugin=None):
        self.cgroup = {"cgroupplugin": plugin} if plugin else {}


@pytest.mark.parametrize("entries,version", [
    ((("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "cgroup2")), 2),
    ((("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "tmpfs"),
      ("/sys/fs/cgroup/systemd", "cgroup"), ("/sys/fs/cgroup/unified", "cgroup2")), 1),
    ((("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "tmpfs"),
      ("/sys/fs/cgroup/systemd", "cgroup2"), ("/sys/fs/cgroup/unified", "cgroup2")), 2),
    ((("/", "ext4"), ("/sys", "sysfs")), 0),                 # nothing mounted there
    ((("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "tmpfs")), 0),
    # the last mount on a point is the one that counts
    ((("/", "ext4"), ("/sys/fs/cgroup", "tmpfs"), ("/sys/fs/cgroup", "cgroup2")), 2),
])
def test_cgroup_autodetection_reads_the_file_systems_under_sys_fs_cgroup(tmp_path, entries,
                                                                         version):
    """Slurm's autodetect_cgroup_version(), which the role's default
    cgroup.conf selects: statfs of /sys/fs/cgroup (whatever CgroupMountpoint
    says), then /sys/fs/cgroup/systemd."""
    from slurm_adopt.newest import cgroup_version
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        if not os.path.isdir(path):
            pytest.fail("%s must exist on the test machine" % path)
    assert cgroup_version(_Conf(), mounts_file(tmp_path, *entries)) == version
    assert cgroup_version(_Conf("autodetect"), mounts_file(tmp_path, *entries)) == version
    assert cgroup_version(_Conf("cgroup/v1"), mounts_file(tmp_path, *entries)) == 1


AUTODETECT_IN_A_NAMESPACE = r"""
import subprocess, sys
sys.path.insert(0, sys.argv[1])
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["mount", "-t", "cgroup2", "none", "/sys/fs/cgroup"], check=True)
from slurm_adopt.newest import cgroup_version
class Conf(object):
    cgroup = {}
print(cgroup_version(Conf()))
"""


@pytest.mark.timeout(60)
def test_cgroup_autodetection_on_a_real_cgroup2_mount():
    """A mount namespace of its own with cgroup2 on /sys/fs/cgroup: v2 for real."""
    import shutil
    import subprocess
    import sys
    if os.getuid() != 0 or not shutil.which("unshare"):
        pytest.fail("needs root and unshare(1)")
    here = os.path.dirname(os.path.dirname(flow_mod.__file__))
    p = subprocess.run(["unshare", "-m", sys.executable, "-I", "-c", AUTODETECT_IN_A_NAMESPACE, here],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=50, check=False)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == "2"


def test_autodetected_v2_picks_the_highest_job_id_v1_the_newest_cgroup(tmp_path, monkeypatch):
    """The two rules really differ: job 41 has the newest v1 cgroup, 40 < 41 < 42."""
    from slurm_adopt import newest
    node = Node(tmp_path, cgroup="autodetect")
    try:
        for job in (40, 41, 42):
            node.job(job)
        node.cgroup_mtime(40, time.time() - 100)
        node.cgroup_mtime(41, time.time())
        node.cgroup_mtime(42, time.time() - 50)
        v2 = mounts_file(tmp_path, ("/", "ext4"), ("/sys/fs/cgroup", "cgroup2"))
        v1 = mounts_file(tmp_path, ("/", "ext4"), ("/sys/fs/cgroup", "tmpfs"),
                         ("/sys/fs/cgroup/systemd", "cgroup"))
        real = newest.cgroup_version
        for table, picked in ((v2, 42), (v1, 41)):
            monkeypatch.setattr(newest, "cgroup_version", lambda conf, t=table: real(conf, t))
            rc, _ctx, adopter, _log = node.run()
            assert rc == C.PAM_SUCCESS and adopter.adopted_job == picked
    finally:
        node.close()


def test_raw_hostname_with_a_missing_spool_dir(node, monkeypatch):
    """Probing the stepds under the raw host name in a spool dir that does
    not exist (SlurmdSpoolDir=...%n) is quiet and harmless: no jobs."""
    import slurm_adopt.flow as fm
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "dyn9")
    monkeypatch.setattr(fm.socket, "gethostname", lambda: "dyn9")
    monkeypatch.setattr(fm, "canonical_names", lambda host: [])
    node.conf.write_text("NodeName=elsewhere\nSlurmdSpoolDir=%s/%%n\n" % node.spool)
    ctx = Ctx()
    log = Log(to_syslog=False)
    rc = run_safely(Adopter(parse_options([]), ctx, log, environ={"SLURM_CONF": str(node.conf)}))
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_JOBS]
    assert not any("unexpected error" in text for _l, text in log.lines)


@pytest.mark.timeout(30)
def test_a_slow_dns_lookup_does_not_stop_joining_the_mount_namespace(node, monkeypatch):
    """The node-name guess gives up a slow DNS lookup; what is left of it
    must not stay in this process: setns(CLONE_NEWNS) fails (EINVAL) while
    any other thread shares the process's fs_struct. The flow runs in a
    forked child (the fake stepd serves from threads of this process) and
    joins its own mount namespace, handed over by the stepd."""
    import slurm_adopt.flow as fm
    import slurm_adopt.slurmconf as sc
    if os.getuid() != 0:
        pytest.fail("needs root (setns)")
    monkeypatch.setattr(fm, "DNS_TIMEOUT", 0.3)
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "slowhost")
    monkeypatch.setattr(fm, "canonical_names", lambda host: time.sleep(5) or [])
    node.conf.write_text("NodeName=%s NodeHostname=localhost\nSlurmdSpoolDir=%s\n"
                         % (NODE, node.spool))
    mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        fake = node.job(17, version=0x2C00, namespaces=[(0x00020000, mnt)])
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:                                   # one thread: this one
            code = 99
            try:
                os.close(read_end)
                log = Log(to_syslog=False)
                code = run_safely(Adopter(parse_options(["action_adopt_failure=deny"]), Ctx(),
                                          log, environ={"SLURM_CONF": str(node.conf)}))
                os.write(write_end, "\n".join(text for _l, text in log.lines).encode())
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as handle:
            lines = handle.read().decode()
        _pid, status = os.waitpid(pid, 0)
    finally:
        os.close(mnt)
    assert "lookup of slowhost did not finish" in lines, lines
    assert "setns" not in lines, lines
    assert os.WEXITSTATUS(status) == C.PAM_SUCCESS and adopted(fake), lines
