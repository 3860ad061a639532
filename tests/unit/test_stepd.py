# SPDX-License-Identifier: GPL-3.0-or-later
"""The slurmstepd protocol, against a fake stepd speaking each version."""

import os
import time

import pytest

from fakes.fake_stepd import FakeStepd
from slurm_adopt import constants as C
from slurm_adopt.log import Log
from slurm_adopt.stepd import (Deadline, StepdConnection, StepLoc, list_steps, parse_step_name,
                               query_steps)

NODE = "nodeA"


@pytest.fixture
def spool(tmp_path):
    return str(tmp_path)


def loc(spool, job, step=C.SLURM_EXTERN_CONT):
    return StepLoc(spool, NODE, job, step)


@pytest.mark.parametrize("name,parsed", [
    ("nodeA_12.4294967292", (12, C.SLURM_EXTERN_CONT, C.NO_VAL)),
    ("nodeA_12.0.1", (12, 0, 1)),
    ("nodeA_12.batch", None),
    ("nodeB_12.0", None),
    ("nodeA_12", None),
    ("nodeA_12.0.1.2", None),
])
def test_parse_step_name(name, parsed):
    assert parse_step_name(name, NODE) == parsed


def test_list_steps_missing_directory_is_empty_and_logged(tmp_path):
    log = Log(to_syslog=False)
    assert list_steps(str(tmp_path / "nope"), NODE, log) == []
    assert "Domain socket directory" in log.lines[-1][1]


def test_list_steps_finds_sockets_and_ignores_others(spool):
    for name in ("nodeA_5.4294967292", "nodeA_5.0", "nodeA_6.4294967292", "other_7.0", "cred_state"):
        open(os.path.join(spool, name), "w").close()
    found = sorted((s.job_id, s.step_id) for s in list_steps(spool, NODE, Log(to_syslog=False)))
    assert found == [(5, 0), (5, C.SLURM_EXTERN_CONT), (6, C.SLURM_EXTERN_CONT)]


@pytest.mark.parametrize("version", [0x2600, 0x2A00, 0x2C00, 0x2D00])
def test_handshake_uid_add_and_x11(spool, version):
    fake = FakeStepd(spool, NODE, 42, uid=1234, version=version, x11=(12, "/home/u/.Xauthority"))
    try:
        with StepdConnection(loc(spool, 42), Deadline(5)) as conn:
            assert conn.protocol_version == version
            assert conn.get_uid() == 1234
            assert conn.add_extern_pid(4321) == 0
            assert conn.x11_display() == (12, "/home/u/.Xauthority")
            assert conn.namespace_fds() == []
        assert fake.added == [4321]
        assert fake.client_versions == [C.CLIENT_PROTOCOL_VERSION]
        expected_ns = 28 if version >= 0x2C00 else 26
        assert fake.requests == [20, 22, 23, expected_ns]
    finally:
        fake.close()


def test_x11_reply_is_read_whole_so_the_next_request_is_in_sync(spool):
    """The C module leaves the xauthority half-read in the RPC path; we never do."""
    r, w = os.pipe()
    fake = FakeStepd(spool, NODE, 42, uid=1, version=0x2600, x11=(10, "/tmp/xauth-abc"),
                     namespaces=[(0, r)])
    try:
        with StepdConnection(loc(spool, 42), Deadline(5)) as conn:
            conn.add_extern_pid(1)
            assert conn.x11_display() == (10, "/tmp/xauth-abc")
            fds = conn.namespace_fds()
        assert len(fds) == 1 and fds[0][0] == 0
        assert os.fstat(fds[0][1]).st_ino == os.fstat(r).st_ino
        os.close(fds[0][1])
    finally:
        fake.close()
        os.close(r)
        os.close(w)


def test_namespace_fds_of_25_11(spool):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    fake = FakeStepd(spool, NODE, 7, uid=1, version=0x2C00,
                     namespaces=[(0x00020000, r1), (0x10000000, r2)])
    try:
        with StepdConnection(loc(spool, 7), Deadline(5)) as conn:
            got = conn.namespace_fds()
        assert [t for t, _fd in got] == [0x00020000, 0x10000000]
        assert [os.fstat(fd).st_ino for _type, fd in got] == [os.fstat(r1).st_ino, os.fstat(r2).st_ino]
        for _type, fd in got:
            os.close(fd)
    finally:
        fake.close()
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_rejected_handshake(spool):
    fake = FakeStepd(spool, NODE, 8, uid=1, behaviour="reject")
    try:
        with pytest.raises(C.StepdError) as err:
            StepdConnection(loc(spool, 8), Deadline(5)).connect()
        assert "rejected" in str(err.value)
    finally:
        fake.close()


def test_stopped_stepd_times_out_quickly(spool):
    fake = FakeStepd(spool, NODE, 9, uid=1, behaviour="stopped")
    try:
        start = time.monotonic()
        with pytest.raises(C.StepdTimeout):
            StepdConnection(loc(spool, 9), Deadline(5), timeout=0.3).connect()
        assert time.monotonic() - start < 2
    finally:
        fake.close()


def test_stale_socket_file_is_a_plain_error(spool):
    path = loc(spool, 10).path
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()                     # the file stays, nobody listens: ECONNREFUSED
    with pytest.raises(C.StepdError) as err:
        StepdConnection(loc(spool, 10), Deadline(5)).connect()
    assert not isinstance(err.value, C.StepdTimeout)
    assert "connect() failed" in str(err.value)


def test_ending_step_closes_without_reply(spool):
    fake = FakeStepd(spool, NODE, 11, uid=1, version=0x2A00, behaviour="ending")
    try:
        with StepdConnection(loc(spool, 11), Deadline(5)) as conn:
            with pytest.raises(C.StepdError):
                conn.add_extern_pid(99)
    finally:
        fake.close()


def test_deadline_bounds_every_call(spool):
    fake = FakeStepd(spool, NODE, 12, uid=1, behaviour="stopped")
    try:
        deadline = Deadline(0.2)
        with pytest.raises(C.StepdTimeout):
            StepdConnection(loc(spool, 12), deadline, timeout=5).connect()
        with pytest.raises(C.StepdTimeout):
            StepdConnection(loc(spool, 12), deadline, timeout=5).connect()
    finally:
        fake.close()


# -- issue 9: concurrent uid queries, peer check, fd hygiene -------------------------

def test_parse_step_name_takes_only_ascii_digits():
    """Slurm's regex is [0-9]*: other scripts' digits are not a job id (and
    must not break the listing: int() refuses some of them)."""
    assert parse_step_name("nodeA_\u0661\u0662.4294967292", NODE) is None
    assert parse_step_name("nodeA_\u00b2.4294967292", NODE) is None
    assert parse_step_name("nodeA_12.\uff14", NODE) is None


def test_list_steps_skips_a_name_with_unicode_digits(spool):
    for name in ("nodeA_\u00b2.4294967292", "nodeA_7.4294967292"):
        open(os.path.join(spool, name), "w").close()
    assert [s.job_id for s in list_steps(spool, NODE, Log(to_syslog=False))] == [7]


@pytest.mark.timeout(20)
def test_ten_silent_stepds_cost_about_one_timeout(spool):
    """All stepds are asked at once: ten stopped ones cost one timeout, and
    the answering ones are still answered (issue 9, item 2)."""
    fakes = [FakeStepd(spool, NODE, job, uid=1, behaviour="stopped") for job in range(1, 11)]
    fakes += [FakeStepd(spool, NODE, 20, uid=4242, version=0x2A00),
              FakeStepd(spool, NODE, 21, uid=77)]
    try:
        steps = list_steps(spool, NODE, Log(to_syslog=False))
        start = time.monotonic()
        answers = query_steps(steps, Deadline(20), (0,), keep_uid=4242, timeout=0.5)
        elapsed = time.monotonic() - start
        assert elapsed < 1.5, elapsed
        by_job = {a.loc.job_id: a for a in answers}
        assert [by_job[j].failure for j in range(1, 11)] == ["timeout"] * 10
        assert (by_job[20].uid, by_job[20].version, by_job[20].failure) == (4242, 0x2A00, None)
        assert (by_job[21].uid, by_job[21].failure) == (77, None)
        # the owner's connection stays open, handshake done: it can adopt at once
        assert by_job[21].sock is None and by_job[20].sock is not None
        conn = StepdConnection(by_job[20].loc, Deadline(5), sock=by_job[20].sock, version=0x2A00)
        assert conn.add_extern_pid(999) == 0
        conn.close()
        assert fakes[10].added == [999]
        assert fakes[10].requests == [20, 22]          # one connection: uid, then the adoption
        assert len(fakes[10].client_versions) == 1
    finally:
        for fake in fakes:
            fake.close()


@pytest.mark.timeout(20)
def test_query_keeps_the_reserve_of_the_budget(spool):
    """The queries end before the part of the budget kept for the adoption."""
    fake = FakeStepd(spool, NODE, 1, uid=1, behaviour="stopped")
    try:
        deadline = Deadline(1.0, reserve=0.7)
        start = time.monotonic()
        answers = query_steps(list_steps(spool, NODE, Log(to_syslog=False)), deadline, (0,),
                              timeout=5)
        assert time.monotonic() - start < 0.6
        assert answers[0].failure == "timeout"
        assert deadline.remaining() > 0.4
    finally:
        fake.close()


def test_query_of_many_stepds_in_batches(spool):
    fakes = [FakeStepd(spool, NODE, job, uid=job) for job in range(1, 31)]
    try:
        answers = query_steps(list_steps(spool, NODE, Log(to_syslog=False)), Deadline(10), (0,),
                              parallel=7)
        assert sorted((a.loc.job_id, a.uid) for a in answers) == [(j, j) for j in range(1, 31)]
        assert all(len(f.client_versions) == 1 for f in fakes)
    finally:
        for fake in fakes:
            fake.close()


def test_query_reports_stale_and_rejecting_sockets(spool):
    import socket
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(loc(spool, 5).path)
    stale.close()
    fake = FakeStepd(spool, NODE, 6, uid=1, behaviour="reject")
    try:
        answers = query_steps([loc(spool, 5), loc(spool, 6)], Deadline(5), (0,))
        assert [a.failure for a in answers] == ["error", "error"]
        assert "connect() failed" in answers[0].message and "rejected" in answers[1].message
    finally:
        fake.close()


SERVE_AS = r"""
import sys
sys.path.insert(0, sys.argv[1])
from fakes.fake_stepd import serve_forever_as
serve_forever_as(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], "nodeA", 31, 4242)
"""


@pytest.fixture
def stepd_of_nobody(tmp_path):
    """A fake stepd whose socket is served by user nobody."""
    import pwd
    import subprocess
    import sys
    nobody = pwd.getpwnam("nobody")
    shared = tmp_path / "shared"
    shared.mkdir()
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-I", "-c", SERVE_AS, tests_dir, str(nobody.pw_uid),
                             str(nobody.pw_gid), str(shared)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield str(shared), nobody.pw_uid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(20)
def test_a_step_socket_served_by_another_user_is_not_trusted(stepd_of_nobody):
    """SO_PEERCRED: only root or a Slurm user may answer (issue 9, item 7)."""
    directory, uid = stepd_of_nobody
    step = loc(directory, 31)
    answers = query_steps([step], Deadline(5), (0,))
    assert answers[0].failure == "untrusted" and answers[0].uid is None
    assert "served by uid %d" % uid in answers[0].message
    with pytest.raises(C.StepdUntrusted):
        StepdConnection(step, Deadline(5)).connect()
    # the Slurm user (here: that uid) is trusted
    assert query_steps([step], Deadline(5), (0, uid))[0].uid == 4242


def test_namespace_fds_already_received_are_closed_when_a_later_one_fails(spool):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    fake = FakeStepd(spool, NODE, 7, uid=1, version=0x2C00, behaviour="ns-partial",
                     namespaces=[(0x00020000, r1), (0x10000000, r2)])
    try:
        with StepdConnection(loc(spool, 7), Deadline(5)) as conn:
            with pytest.raises(C.StepdError):
                conn.namespace_fds()
        # no descriptor of this process refers to the first namespace's pipe but r1 itself
        pipe = os.fstat(r1).st_ino
        holders = []
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.stat("/proc/self/fd/" + name).st_ino == pipe:
                    holders.append(int(name))
            except OSError:
                pass
        assert sorted(holders) == sorted([r1, w1])
    finally:
        fake.close()
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_step_ctime_is_whole_seconds(spool):
    fake = FakeStepd(spool, NODE, 8, uid=1)
    try:
        step = loc(spool, 8)
        assert step.ctime == int(os.stat(step.path).st_ctime) and isinstance(step.ctime, int)
    finally:
        fake.close()
