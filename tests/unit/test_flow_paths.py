# SPDX-License-Identifier: GPL-3.0-or-later
"""Parts of the decision flow that the scenarios of test_flow.py stub or
pass by: the lazily imported callerid client, the log's share of the
budget, and "newest" on cgroup v1 when the node name is guessed."""

import socket
import struct
import time

from slurm_adopt import callerid
from slurm_adopt import constants as C
from slurm_adopt import flow as flow_mod
from slurm_adopt.flow import Adopter, run_safely
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options

from test_callerid import FakeSlurmd, packstr, reply_with_cred, v4
from test_flow import NODE, Ctx, adopted, node_v1  # noqa: F401 pylint: disable=unused-import

# The wrapper itself: tests that drive the flow swap flow.callerid_rpc for a
# fake (test_counters.py does not put it back), so it is taken at import.
LAZY_CALLERID_RPC = flow_mod.callerid_rpc


def test_the_lazy_callerid_client_passes_every_argument(monkeypatch):
    """flow.callerid_rpc imports the client on first use and hands it the
    positional and the keyword arguments as they are."""
    monkeypatch.setattr(callerid, "munge_encode", lambda payload, sock, timeout: b"MUNGE:fake:")
    body = struct.pack(">II", 808, 0) + packstr("n8")
    slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, body, None,
                                                    flags=C.SLURM_NO_AUTH_CRED))
    conn = callerid.CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        answer = LAZY_CALLERID_RPC(conn, slurmd.port, 0x2600, None, 2.0, time.monotonic() + 5,
                                   Log(to_syslog=False), trusted_uids=(0,), block_zero_hash=True)
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
