# SPDX-License-Identifier: GPL-3.0-or-later
"""Parts of the decision flow that the scenarios of test_flow.py stub or
pass by: the lazily imported callerid client, the log's share of the
budget, and "newest" on cgroup v1 when the node name is guessed."""

import os
import socket
import struct
import time

import pytest

from slurm_adopt import callerid, munge
from slurm_adopt import constants as C
from slurm_adopt import flow as flow_mod
from slurm_adopt.flow import Adopter, _LazyUids, run_safely
from slurm_adopt.stepd import StepLoc
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options

from test_callerid import REAL_MUNGE, FakeSlurmd, packstr, real_munged, reply_with_cred, v4
from test_flow import NODE, UID, Ctx, adopted, node, node_v1  # noqa: F401 pylint: disable=unused-import

# The wrapper itself: tests that drive the flow swap flow.callerid_rpc for a
# fake (test_counters.py does not put it back), so it is taken at import.
LAZY_CALLERID_RPC = flow_mod.callerid_rpc


def test_the_lazy_callerid_client_passes_every_argument():
    """flow.callerid_rpc imports the client on first use and hands it the
    positional and the keyword arguments as they are: here block_null_hash,
    which refuses the reply's credential without a hash."""
    real_munged()
    body = struct.pack(">II", 808, 0) + packstr("n8")
    cred = munge.encode(b"", REAL_MUNGE, 3)
    conn = callerid.CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    for blocked in (False, True):
        slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, body, cred))
        try:
            if blocked:
                with pytest.raises(C.RpcError) as err:
                    LAZY_CALLERID_RPC(conn, slurmd.port, 0x2600, REAL_MUNGE, 2.0,
                                      time.monotonic() + 5, Log(to_syslog=False),
                                      trusted_uids=(0,), block_null_hash=True)
                assert "block_null_hash" in str(err.value)
            else:
                answer = LAZY_CALLERID_RPC(conn, slurmd.port, 0x2600, REAL_MUNGE, 2.0,
                                           time.monotonic() + 5, Log(to_syslog=False),
                                           trusted_uids=(0,))
                assert answer == (808, "n8")
        finally:
            slurmd.close()


def test_the_log_shares_the_adopters_budget():
    """Syslog writes are bounded by the same deadline as everything else."""
    log = Log(to_syslog=False)
    adopter = Adopter(parse_options([]), Ctx(), log, environ={})
    assert log.deadline is adopter.deadline


def test_newest_on_cgroup_v1_with_a_guessed_node_name(node_v1):  # noqa: F811
    """Without nodename=, the C module looks for the job cgroups under
    slurm_<NodeName> of the guessed node name too."""
    short = socket.gethostname().split(".", 1)[0]
    node_v1.conf.write_text("NodeName=%s NodeHostname=%s\nSlurmdSpoolDir=%s\n"
                            % (NODE, short, node_v1.spool))
    older_id_newer_cgroup, newer_id = node_v1.job(40), node_v1.job(41)
    node_v1.cgroup_mtime(40, time.time())
    node_v1.cgroup_mtime(41, time.time() - 100)
    log = Log(to_syslog=False)
    ctx = Ctx()
    ctx.pid = 54321
    adopter = Adopter(parse_options([]), ctx, log, environ={"SLURM_CONF": str(node_v1.conf)})
    assert run_safely(adopter) == C.PAM_SUCCESS
    assert adopter.nodename == NODE
    assert adopted(older_id_newer_cgroup) and newer_id.added == []
    assert [text for _level, text in log.lines if "Couldn't stat" in text] == []


def _adopter(node, *args, dry_run=False):  # noqa: F811
    log = Log(to_syslog=False)
    adopter = Adopter(parse_options(["nodename=" + NODE] + list(args)), Ctx(), log,
                      dry_run=dry_run, environ={"SLURM_CONF": str(node.conf)})
    from slurm_adopt.slurmconf import SlurmConfig
    adopter.conf = SlurmConfig.load(str(node.conf))
    return adopter, log


def test_adopt_a_step_whose_connection_was_not_kept(node):  # noqa: F811
    """adopt() opens its own connection when the uid query kept none."""
    fake = node.job(60)
    adopter, _log = _adopter(node)
    assert adopter.adopt(StepLoc(str(node.spool), NODE, 60, C.SLURM_EXTERN_CONT)) is True
    assert adopted(fake) and adopter.adopted_job == 60
    assert fake.client_versions == [C.CLIENT_PROTOCOL_VERSION]


def test_dry_run_of_a_step_that_cannot_be_asked(node):  # noqa: F811
    adopter, log = _adopter(node, dry_run=True)
    step = StepLoc(str(node.spool), NODE, 61, C.SLURM_EXTERN_CONT)      # no socket
    assert adopter.adopt(step) is False and adopter.adopted_job is None
    assert log.lines[-1][1].startswith("Process 54321 adoption FAILED for job 61: connect() failed")


def test_25_11_namespace_failure_is_worded_for_25_11(node):  # noqa: F811
    """From 25.11 the C module asks REQUEST_GET_NS_FDS and says so."""
    r, w = os.pipe()
    node.job(62, version=0x2C00, behaviour="ns-partial", namespaces=[(0x00020000, r)])
    try:
        rc, _ctx, _adopter, log = node.run("action_adopt_failure=deny")
        assert rc == C.PAM_PERM_DENIED
        assert [t for _l, t in log.lines if "failed:" in t][0].startswith("stepd_get_ns_fds failed: ")
    finally:
        os.close(r)
        os.close(w)


def test_namespaces_after_one_that_cannot_be_joined_are_closed(node):  # noqa: F811
    """pam_exec cannot setns: the first namespace fails, and every fd the
    stepd handed over is closed all the same."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    r3, w3 = os.pipe()
    node.job(63, version=0x2C00, namespaces=[(0x00020000, r1), (0x10000000, r2), (0x08000000, r3)])
    ctx = Ctx()
    ctx.can_setns = False
    try:
        rc, _ctx, _adopter, log = node.run("action_adopt_failure=deny", ctx=ctx)
        assert rc == C.PAM_PERM_DENIED
        assert (C.LOG_LEVEL_ERROR, "cannot join the job's namespace from a pam_exec helper") in log.lines
        for r, w in ((r1, w1), (r2, w2), (r3, w3)):
            ino = os.fstat(r).st_ino
            holders = sorted(int(n) for n in os.listdir("/proc/self/fd")
                             if _same_file("/proc/self/fd/" + n, ino))
            assert holders == sorted([r, w])
    finally:
        for fd in (r1, w1, r2, w2, r3, w3):
            os.close(fd)


def _same_file(path, ino):
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False


def test_newest_that_adopts_under_action_adopt_failure_deny(node):  # noqa: F811
    """Up to 25.11: the newest job is adopted; action_adopt_failure only
    matters when that fails."""
    older, newer = node.job(70), node.job(71)
    rc, _ctx, adopter, _log = node.run("action_unknown=newest", "action_adopt_failure=deny")
    assert rc == C.PAM_SUCCESS and adopted(newer) and older.added == []
    assert adopter.adopted_job == 71


def test_26_05_rpc_names_one_of_several_jobs(node):  # noqa: F811
    a, b = node.job(72, version=0x2D00), node.job(73, version=0x2D00)
    rc, ctx, _adopter, _log = node.run("action_unknown=deny", rpc=72)
    assert rc == C.PAM_SUCCESS and adopted(a) and b.added == []
    assert ctx.env["SLURM_JOB_ID"] == "72"


def test_slurm_users_given_as_a_number_then_a_name():
    nobody = __import__("pwd").getpwnam("nobody").pw_uid
    uids = _LazyUids(["4242", "nobody"])
    assert 4242 in uids and nobody in uids and 4243 not in uids
