"""The slurmstepd protocol, against a fake stepd speaking each version."""

import os
import time

import pytest

from fakes.fake_stepd import FakeStepd
from slurm_adopt import constants as C
from slurm_adopt.log import Log
from slurm_adopt.stepd import Deadline, StepdConnection, StepLoc, list_steps, parse_step_name

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
