# SPDX-License-Identifier: GPL-3.0-or-later
"""The module's login counters (slurm_adopt/counters.py), which the drift
check turns into node_exporter metrics: the real decision flow (fake stepds,
as test_flow.py) counts each decision once, in the file of its result; the
counter never creates a file, never writes through a symlink, a hard link, a
FIFO or to a file not owned by root, stops at MAX_SIZE, and never changes a
login's result, even when the counter directory is broken."""

import os

import pytest

from slurm_adopt import constants as C
from slurm_adopt import counters
from slurm_adopt import flow as flow_mod
from slurm_adopt.flow import Adopter, run_safely
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options
from test_flow import NODE, Ctx, Node

NAMES = ("adopted", "allowed", "ignored", "denied", "errors")


@pytest.fixture
def counter_dir(tmp_path, monkeypatch):
    path = tmp_path / "counters"
    path.mkdir()
    for name in NAMES:
        (path / name).write_bytes(b"")
    monkeypatch.setattr(counters, "COUNTER_DIR", str(path))
    return path


@pytest.fixture
def node(tmp_path, monkeypatch):
    # Node.run puts a fake callerid RPC into the flow module: put the real one back afterwards
    monkeypatch.setattr(flow_mod, "callerid_rpc", flow_mod.callerid_rpc)
    n = Node(tmp_path)
    yield n
    n.close()


def sizes(path):
    return {name: os.path.getsize(str(path / name)) for name in NAMES if (path / name).exists()}


def test_each_decision_is_counted_once_in_its_file(node, counter_dir):
    rc, _ctx, _a, _log = node.run()                       # no job: denied
    assert rc == C.PAM_PERM_DENIED
    assert sizes(counter_dir) == {"adopted": 0, "allowed": 0, "ignored": 0, "denied": 1, "errors": 0}
    rc, _ctx, _a, _log = node.run("action_no_jobs=ignore")   # no job: ignored
    assert rc == C.PAM_IGNORE
    fake = node.job(7)
    rc, _ctx, adopter, _log = node.run()                  # one job: adopted
    assert rc == C.PAM_SUCCESS and adopter.adopted_job == 7 and fake.added
    rc, _ctx, _a, _log = node.run(ctx=Ctx(user="root"))   # root: ignored
    assert rc == C.PAM_IGNORE
    assert sizes(counter_dir) == {"adopted": 1, "allowed": 0, "ignored": 2, "denied": 1, "errors": 0}


def test_an_adoption_failure_allowed_counts_as_allowed_with_an_error(node, counter_dir):
    node.job(7, add_rc=-1)
    rc, _ctx, adopter, log = node.run("action_adopt_failure=allow")
    assert rc == C.PAM_SUCCESS and adopter.adopted_job is None
    assert any(level == C.LOG_LEVEL_ERROR for level, _m in log.lines)
    assert sizes(counter_dir) == {"adopted": 0, "allowed": 1, "ignored": 0, "denied": 0, "errors": 1}


def test_a_generic_failure_counts_as_an_error_and_its_action(node, counter_dir):
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\nInclude /nonexistent/x.conf\n" % (NODE, node.spool))
    rc, _ctx, _a, _log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED
    assert sizes(counter_dir)["errors"] == 1 and sizes(counter_dir)["denied"] == 1


def test_explain_is_never_counted(node, counter_dir):
    opts = parse_options(["nodename=%s" % NODE])
    adopter = Adopter(opts, Ctx(), Log(to_syslog=False), dry_run=True,
                      environ={"SLURM_CONF": str(node.conf)})
    assert run_safely(adopter) == C.PAM_PERM_DENIED
    assert set(sizes(counter_dir).values()) == {0}


def test_missing_files_are_not_created(node, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(counters, "COUNTER_DIR", str(empty))
    assert node.run()[0] == C.PAM_PERM_DENIED
    assert os.listdir(str(empty)) == []
    monkeypatch.setattr(counters, "COUNTER_DIR", str(tmp_path / "no" / "such" / "dir"))
    assert node.run()[0] == C.PAM_PERM_DENIED


def test_never_writes_through_a_symlink_a_hard_link_or_a_fifo(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    d = tmp_path / "c"
    d.mkdir()
    os.symlink(str(victim), str(d / "denied"))
    os.link(str(victim), str(d / "adopted"))
    os.mkfifo(str(d / "allowed"))
    (d / "ignored").mkdir()
    for name in ("denied", "adopted", "allowed", "ignored"):
        assert counters.bump(name, str(d)) is False, name
    assert victim.read_bytes() == b"precious"


def test_not_root_owned_and_full_files_are_left_alone(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "denied").write_bytes(b"")
    os.chown(str(d / "denied"), 65534, 65534)
    assert counters.bump("denied", str(d)) is False
    (d / "adopted").write_bytes(b"." * counters.MAX_SIZE)
    assert counters.bump("adopted", str(d)) is False
    assert os.path.getsize(str(d / "adopted")) == counters.MAX_SIZE
    (d / "allowed").write_bytes(b"")
    assert counters.bump("allowed", str(d)) is True
    assert os.path.getsize(str(d / "allowed")) == 1


def test_a_broken_counter_never_changes_a_login(node, counter_dir, monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("boom")
    monkeypatch.setattr(counters, "bump", broken)
    node.job(7)
    rc, _ctx, adopter, _log = node.run()
    assert rc == C.PAM_SUCCESS and adopter.adopted_job == 7
    monkeypatch.setattr(counters, "count", broken)
    rc, _ctx, _a, _log = node.run("action_no_jobs=ignore", ctx=Ctx(user="daemon"))
    assert rc == C.PAM_IGNORE
