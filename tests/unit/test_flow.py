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

        def fake_rpc(conn, port, version, munge_socket, timeout, deadline):
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


def test_unknown_nodename_sends_no_jobs_found(node, monkeypatch):
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "not-in-conf")
    monkeypatch.setattr(sc.socket, "getaddrinfo", lambda *a: [])
    node.conf.write_text("NodeName=elsewhere\nSlurmdSpoolDir=%s\n" % node.spool)
    opts = parse_options(["action_generic_failure=deny"])
    ctx = Ctx()
    rc = run_safely(Adopter(opts, ctx, Log(to_syslog=False), environ={"SLURM_CONF": str(node.conf)}))
    assert rc == C.PAM_PERM_DENIED and ctx.messages == [C.MSG_NO_STEP_LIST]


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
    monkeypatch.setattr(stepd_mod.StepdConnection.__init__, "__defaults__", (0.3,))
    node.job(80, behaviour="stopped")
    start = time.monotonic()
    rc, ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert time.monotonic() - start < 3
    assert rc == C.PAM_PERM_DENIED and ctx.messages == []
    assert any("did not answer" in text for _level, text in log.lines)


def test_stopped_stepd_of_another_job_does_not_block_the_users_job(node, monkeypatch):
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod.StepdConnection.__init__, "__defaults__", (0.3,))
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
