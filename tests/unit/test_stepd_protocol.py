# SPDX-License-Identifier: GPL-3.0-or-later
"""The slurmstepd client at the edges of its protocol: the exact text of each
failure (the flow logs it: "unable to adopt into StepId=<job>.extern: <text>",
and a timeout at error level), replies that arrive in pieces, the bounds on
lengths and counts, the descriptors that come with SCM_RIGHTS, the budget
(Deadline), the socket names, and setns(2) itself."""

import errno
import os
import socket
import struct
import threading
import time

import pytest

from fakes.fake_stepd import FakeStepd
from slurm_adopt import constants as C
from slurm_adopt.log import Log
from slurm_adopt.stepd import (Deadline, StepdConnection, StepLoc, list_steps, parse_step_name,
                               query_steps, setns)
from test_callerid import recv_exactly

NODE = "nodeA"
INT = struct.Struct("=i")


def loc(directory, job, step=C.SLURM_EXTERN_CONT):
    return StepLoc(str(directory), NODE, job, step)


class ScriptedStepd(object):
    """A step socket whose one connection is served by script(conn), after
    the handshake (client version in, `version` out)."""

    def __init__(self, path, script, version=0x2600):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.script, self.version = script, version
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _peer = self.server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                recv_exactly(conn, 4)
                conn.sendall(INT.pack(self.version))
                self.script(conn)
            except (OSError, EOFError):
                pass

    def close(self):
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        self.thread.join(5)


def until_closed(conn):
    """Keep the connection open until the client closes it (or 5 s)."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass


def in_pieces(conn, data, pause=0.02):
    for index in range(len(data)):
        conn.sendall(data[index:index + 1])
        time.sleep(pause)


@pytest.fixture
def scripted(tmp_path):
    made = []

    def make(job, script, version=0x2600):
        made.append(ScriptedStepd(loc(tmp_path, job).path, script, version))
        return StepdConnection(loc(tmp_path, job), Deadline(5), timeout=2)
    yield make
    for stepd in made:
        stepd.close()


# -- the budget --------------------------------------------------------------------------

def test_deadline_gives_the_smaller_of_cap_and_time_left():
    deadline = Deadline(0.5)
    assert 0.4 < deadline.timeout(10) <= 0.5
    assert deadline.timeout(0.1) == 0.1


def test_deadline_keeps_its_reserve_for_the_adoption():
    deadline = Deadline(5, reserve=4.8)
    assert 0.1 < deadline.timeout(10, keep_reserve=True) <= 0.2
    assert 4.9 < deadline.timeout(10) <= 5
    assert deadline.until() == deadline.end
    assert deadline.until(keep_reserve=True) == deadline.end - 4.8


def test_deadline_exhausted():
    for deadline, keep in ((Deadline(-0.01), False), (Deadline(1, reserve=1.5), True)):
        with pytest.raises(C.StepdTimeout) as err:
            deadline.timeout(5, keep_reserve=keep)
        assert str(err.value) == "time budget of the module exhausted"


# -- socket names ------------------------------------------------------------------------

@pytest.mark.parametrize("name,parsed", [
    ("nodeA_.4294967292", (0, C.SLURM_EXTERN_CONT, C.NO_VAL)),   # [0-9]* may be empty: 0
    ("nodeA_7.4294967292.", (7, C.SLURM_EXTERN_CONT, C.NO_VAL)),  # an empty het component
    ("nodeA_7.0.3", (7, 0, 3)),
    ("nodeA_1A.4294967292", None),                                 # not a digit, whatever case
    ("nodeA_12.4294967296", (12, 0, C.NO_VAL)),                    # uint32 wraps as strtoul's cast
])
def test_step_names(name, parsed):
    assert parse_step_name(name, NODE) == parsed


def test_missing_spool_dir_is_logged_with_its_reason(tmp_path):
    log = Log(to_syslog=False)
    assert list_steps(str(tmp_path / "gone"), NODE, log) == []
    assert log.lines == [(C.LOG_LEVEL_ERROR, "Domain socket directory %s: No such file or "
                                             "directory" % (tmp_path / "gone"))]


def test_socket_path_length_limit(tmp_path):
    """sun_path holds 107 bytes and a NUL: a longer path is refused before connect()."""
    base = str(tmp_path) + "/"
    for total, refused in ((107, False), (108, True)):
        directory = base + "d" * (total - len(base) - len("/nodeA_5.0")) + "/"
        os.makedirs(directory, exist_ok=True)
        step = StepLoc(directory.rstrip("/"), NODE, 5, 0)
        assert len(step.path.encode()) == total
        with pytest.raises(C.StepdError) as err:
            StepdConnection(step, Deadline(5)).connect()
        answer = query_steps([step], Deadline(5), (0,))[0]
        if refused:
            assert str(err.value) == "Unix socket path '%s' is too long" % step.path
            assert (answer.failure, answer.message) == (
                "error", "Unix socket path '%s' is too long" % step.path)
        else:
            assert str(err.value) == ("connect() failed for %s: No such file or directory"
                                      % step.path)
            assert (answer.failure, answer.message) == (
                "error", "connect() failed for %s: No such file or directory" % step.path)


# -- connect and handshake ----------------------------------------------------------------

def test_connect_to_a_stale_socket_names_the_error(tmp_path):
    path = loc(tmp_path, 10).path
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    with pytest.raises(C.StepdError) as err:
        StepdConnection(loc(tmp_path, 10), Deadline(5)).connect()
    assert str(err.value) == "connect() failed for %s: Connection refused" % path


@pytest.mark.timeout(20)
def test_connect_to_a_stepd_whose_backlog_is_full_fails_at_once(tmp_path):
    """A stopped slurmstepd accepts nothing: once its backlog is full, a
    blocking connect() would wait until it is resumed. Ours (a socket with a
    timeout) gets EAGAIN at once and names it."""
    path = loc(tmp_path, 11).path
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(0)
    fillers = []
    try:
        for _i in range(2):
            filler = socket.socket(socket.AF_UNIX)
            filler.setblocking(False)
            try:
                filler.connect(path)
            except (BlockingIOError, OSError):
                pass
            fillers.append(filler)
        start = time.monotonic()
        with pytest.raises(C.StepdError) as err:
            StepdConnection(loc(tmp_path, 11), Deadline(5), timeout=0.3).connect()
        assert time.monotonic() - start < 1.5
        assert str(err.value) == "connect() failed for %s: Resource temporarily unavailable" % path
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_rejected_handshake_is_named(tmp_path):
    fake = FakeStepd(str(tmp_path), NODE, 8, uid=1, behaviour="reject")
    try:
        with pytest.raises(C.StepdError) as err:
            StepdConnection(loc(tmp_path, 8), Deadline(5)).connect()
        assert str(err.value) == "slurmstepd %s rejected the connection" % fake.path
    finally:
        fake.close()


def test_handshake_records_the_version_on_the_step(tmp_path):
    fake = FakeStepd(str(tmp_path), NODE, 9, uid=1, version=0x2B00)
    step = loc(tmp_path, 9)
    try:
        conn = StepdConnection(step, Deadline(5))
        assert conn.connect() == 0x2B00
        assert step.protocol_version == 0x2B00
        conn.close()
        conn.close()                      # a second close is harmless
        assert conn.sock is None
    finally:
        fake.close()


# -- replies -------------------------------------------------------------------------------

def test_silent_stepd_is_named_with_its_timeout(tmp_path):
    fake = FakeStepd(str(tmp_path), NODE, 12, uid=1, behaviour="stopped")
    try:
        with pytest.raises(C.StepdTimeout) as err:
            StepdConnection(loc(tmp_path, 12), Deadline(5), timeout=0.3).connect()
        assert str(err.value) == "slurmstepd %s did not answer within 0.3s" % fake.path
    finally:
        fake.close()


def test_stepd_closing_is_named(scripted, tmp_path):
    def close_after_request(conn):
        recv_exactly(conn, 4)
    conn = scripted(13, close_after_request)
    with pytest.raises(C.StepdError) as err:
        with conn:
            conn.get_uid()
    assert str(err.value) == "slurmstepd %s closed the connection" % loc(tmp_path, 13).path


@pytest.mark.timeout(20)
def test_replies_in_pieces_are_put_together(scripted):
    """A uid that arrives a byte at a time, an X11 reply in two parts."""
    def trickle(conn):
        recv_exactly(conn, 4)
        in_pieces(conn, struct.pack("=I", 4321))
        recv_exactly(conn, 4)
        raw = b"/home/u/.Xauthority\0"
        reply = INT.pack(11) + INT.pack(len(raw)) + raw
        conn.sendall(reply[:2])                   # half the display number, then the rest at once:
        time.sleep(0.05)                          # a read must not take more than it asked for
        conn.sendall(reply[2:])
        until_closed(conn)
    conn = scripted(14, trickle)
    with conn:
        assert conn.get_uid() == 4321
        assert conn.x11_display() == (11, "/home/u/.Xauthority")


@pytest.mark.parametrize("raw,read", [
    (b"", None),                                  # no X11 forwarding: length 0, no xauthority
    (b"\0", ""),                                  # one byte is read, not left in the stream
    (b"/tmp/xa\0junk\0", "/tmp/xa"),              # a C string
    (b"/tmp/x\xffa\0", "/tmp/x\ufffda"),          # not UTF-8: replaced, never an error
    (b"x" * 65535 + b"\0", "x" * 65535),          # the largest accepted length
])
def test_x11_reply_is_read_whole(scripted, raw, read):
    def x11_then_uid(conn):
        recv_exactly(conn, 4)
        conn.sendall(INT.pack(10) + INT.pack(len(raw)) + raw)
        recv_exactly(conn, 4)
        conn.sendall(struct.pack("=I", 77))
        until_closed(conn)
    conn = scripted(15, x11_then_uid)
    with conn:
        assert conn.x11_display() == (10, read)
        assert conn.get_uid() == 77                # the stream is still in step


def test_x11_reply_with_an_implausible_length(scripted):
    def huge(conn):
        recv_exactly(conn, 4)
        conn.sendall(INT.pack(10) + INT.pack(65537))
        until_closed(conn)
    conn = scripted(16, huge)
    with pytest.raises(C.StepdError) as err:
        with conn:
            conn.x11_display()
    assert str(err.value) == "implausible xauthority length 65537"


# -- namespaces ------------------------------------------------------------------------------

def _holders(fd):
    """The descriptors of this process that refer to the same file as fd."""
    ino = os.fstat(fd).st_ino
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.stat("/proc/self/fd/" + name).st_ino == ino:
                out.append(int(name))
        except OSError:
            pass
    return sorted(out)


def test_namespace_count_bounds(scripted, tmp_path):
    r, w = os.pipe()

    def typed(count, send):
        def script(conn):
            recv_exactly(conn, 4)
            conn.sendall(struct.pack("=I", count))
            for _i in range(send):
                conn.sendall(INT.pack(0x00020000))
                conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, INT.pack(r))])
            until_closed(conn)
        return script
    try:
        conn = scripted(17, typed(64, 64), version=0x2C00)
        with conn:
            got = conn.namespace_fds()
        assert len(got) == 64
        for _type, fd in got:
            os.close(fd)
        conn = scripted(18, typed(65, 0), version=0x2C00)
        with pytest.raises(C.StepdError) as err:
            with conn:
                conn.namespace_fds()
        assert str(err.value) == "implausible namespace count 65"
        assert _holders(r) == sorted([r, w])          # pipe ends share an inode
    finally:
        os.close(r)
        os.close(w)


def test_legacy_namespace_refusal_is_named(tmp_path):
    fake = FakeStepd(str(tmp_path), NODE, 19, uid=1, version=0x2A00, behaviour="ns-refused")
    try:
        with StepdConnection(loc(tmp_path, 19), Deadline(5)) as conn:
            with pytest.raises(C.StepdError) as err:
                conn.namespace_fds()
        assert str(err.value) == "stepd_get_ns_fd failed"
    finally:
        fake.close()


def test_extra_descriptors_in_one_message_are_closed(scripted):
    """One fd per message: a second one that comes along is closed at once."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()

    def two_in_one(conn):
        recv_exactly(conn, 4)
        conn.sendall(INT.pack(5))
        conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=ii", r1, r2))])
        until_closed(conn)
    try:
        conn = scripted(20, two_in_one, version=0x2A00)
        with conn:
            [(ns_type, fd)] = conn.namespace_fds()
        assert ns_type == 0 and os.fstat(fd).st_ino == os.fstat(r1).st_ino
        os.close(fd)
        assert _holders(r2) == sorted([r2, w2])       # pipe ends share an inode
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


@pytest.mark.parametrize("send,text", [
    (b"\0", "slurmstepd %s sent no file descriptor"),
    (b"", "slurmstepd %s closed the connection"),
])
def test_missing_namespace_descriptor_is_named(scripted, tmp_path, send, text):
    def no_fd(conn):
        recv_exactly(conn, 4)
        conn.sendall(INT.pack(5) + send)
        if send:
            until_closed(conn)
    conn = scripted(21, no_fd, version=0x2A00)
    with pytest.raises(C.StepdError) as err:
        with conn:
            conn.namespace_fds()
    assert str(err.value) == text % loc(tmp_path, 21).path


def test_namespace_descriptor_that_never_comes_is_named(scripted, tmp_path):
    def late(conn):
        recv_exactly(conn, 4)
        conn.sendall(INT.pack(5))
        until_closed(conn)
    conn = scripted(22, late, version=0x2A00)
    conn.timeout = 0.3
    with pytest.raises(C.StepdTimeout) as err:
        with conn:
            conn.namespace_fds()
    assert str(err.value) == "slurmstepd %s: no namespace fd within 0.3s" % loc(tmp_path, 22).path


def test_setns_joins_a_namespace_and_names_a_refusal():
    """setns(2) through libc: this process's own UTS namespace can be joined
    again; the wrong type for a descriptor is EINVAL, with its text."""
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        assert setns(fd, 0x04000000) is None            # CLONE_NEWUTS
        with pytest.raises(OSError) as err:
            setns(fd, 0x40000000)                       # CLONE_NEWNET: not this fd's type
        assert err.value.errno == errno.EINVAL
        assert err.value.strerror == os.strerror(errno.EINVAL)
    finally:
        os.close(fd)


# -- the uid queries, all at once (query_steps) -------------------------------------------

def test_query_names_a_rejection_and_a_failed_connect(tmp_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(loc(tmp_path, 5).path)
    stale.close()
    fake = FakeStepd(str(tmp_path), NODE, 6, uid=1, behaviour="reject")
    try:
        answers = query_steps([loc(tmp_path, 5), loc(tmp_path, 6)], Deadline(5), (0,))
        assert [(a.failure, a.message) for a in answers] == [
            ("error", "connect() failed for %s: Connection refused" % loc(tmp_path, 5).path),
            ("error", "slurmstepd %s rejected the connection" % fake.path)]
    finally:
        fake.close()


def test_query_of_a_stepd_that_resets_the_connection(tmp_path):
    """A stepd that closes without reading the request: the read fails at
    once (ECONNRESET), which is an error, not a wait for the timeout."""
    path = loc(tmp_path, 7).path
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def close_unread():
        conn, _peer = server.accept()
        time.sleep(0.1)                       # the request is in its buffer, unread
        conn.close()
    thread = threading.Thread(target=close_unread, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        [answer] = query_steps([loc(tmp_path, 7)], Deadline(5), (0,), timeout=3)
        assert time.monotonic() - start < 1.5
        assert (answer.failure, answer.message) == (
            "error", "slurmstepd %s: read failed: [Errno 104] Connection reset by peer" % path)
    finally:
        thread.join(5)
        server.close()


@pytest.mark.timeout(20)
def test_query_of_a_stepd_whose_backlog_is_full(tmp_path):
    """connect() gets EAGAIN: it is tried again until the stepd's timeout,
    never blocking, and the others are answered meanwhile."""
    path = loc(tmp_path, 8).path
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(0)
    fillers = []
    for _i in range(2):
        filler = socket.socket(socket.AF_UNIX)
        filler.setblocking(False)
        try:
            filler.connect(path)
        except OSError:
            pass
        fillers.append(filler)
    fake = FakeStepd(str(tmp_path), NODE, 9, uid=4242)
    try:
        start = time.monotonic()
        full, good = query_steps([loc(tmp_path, 8), loc(tmp_path, 9)], Deadline(5), (0,),
                                 timeout=0.4)
        assert time.monotonic() - start < 1.5
        assert (full.failure, full.message) == (
            "timeout", "slurmstepd %s did not answer within 0.4s" % path)
        assert (good.failure, good.uid) == (None, 4242)
    finally:
        fake.close()
        for sock in fillers:
            sock.close()
        server.close()


@pytest.mark.timeout(20)
def test_query_asks_at_most_parallel_stepds_at_once(tmp_path):
    """parallel=2 and three silent stepds: the third is asked when the first
    two have timed out, so the whole query takes two timeouts."""
    fakes = [FakeStepd(str(tmp_path), NODE, job, uid=1, behaviour="stopped") for job in (1, 2, 3)]
    try:
        start = time.monotonic()
        answers = query_steps([loc(tmp_path, j) for j in (1, 2, 3)], Deadline(10), (0,),
                              timeout=0.4, parallel=2)
        elapsed = time.monotonic() - start
        assert [a.failure for a in answers] == ["timeout"] * 3
        assert 0.75 < elapsed < 2.0, elapsed
    finally:
        for fake in fakes:
            fake.close()


def test_query_goes_on_after_a_step_it_cannot_even_start(tmp_path):
    """parallel=1: a socket path that is too long fails before connect();
    the next step is still asked."""
    long_dir = str(tmp_path) + "/" + "d" * 100
    os.makedirs(long_dir)
    fake = FakeStepd(str(tmp_path), NODE, 4, uid=4242)
    try:
        bad, good = query_steps([StepLoc(long_dir, NODE, 3, C.SLURM_EXTERN_CONT),
                                 loc(tmp_path, 4)], Deadline(5), (0,), parallel=1)
        assert bad.failure == "error" and "is too long" in bad.message
        assert (good.failure, good.uid) == (None, 4242)
    finally:
        fake.close()


def test_write_to_a_stepd_that_went_away_is_named(scripted, tmp_path):
    conn = scripted(23, lambda c: None)           # handshake, then closes
    with conn:
        time.sleep(0.2)
        with pytest.raises(C.StepdError) as err:
            conn.add_extern_pid(1)
    assert str(err.value) == ("slurmstepd %s: write failed: [Errno 32] Broken pipe"
                              % loc(tmp_path, 23).path)


def test_read_from_a_stepd_that_reset_the_connection_is_named(scripted, tmp_path):
    def close_unread(conn):
        time.sleep(0.2)                           # the request arrives and is never read
    conn = scripted(24, close_unread)
    with conn:
        with pytest.raises(C.StepdError) as err:
            conn.get_uid()
    assert str(err.value) == ("slurmstepd %s: read failed: [Errno 104] Connection reset by peer"
                              % loc(tmp_path, 24).path)


def test_query_of_a_stepd_that_hangs_up_after_the_request(tmp_path):
    path = loc(tmp_path, 25).path
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def read_then_close():
        conn, _peer = server.accept()
        recv_exactly(conn, 8)                     # version and REQUEST_STEP_UID, read
        conn.close()
    thread = threading.Thread(target=read_then_close, daemon=True)
    thread.start()
    try:
        [answer] = query_steps([loc(tmp_path, 25)], Deadline(5), (0,), timeout=3)
        assert (answer.failure, answer.message) == (
            "error", "slurmstepd %s closed the connection" % path)
    finally:
        thread.join(5)
        server.close()


@pytest.mark.timeout(20)
def test_query_steps_not_yet_asked_when_the_budget_ends(tmp_path):
    """parallel=1 and a silent first stepd: the budget ends while the second
    waits its turn; both are named with the budget, and the second was never
    connected to."""
    fakes = [FakeStepd(str(tmp_path), NODE, 1, uid=1, behaviour="stopped"),
             FakeStepd(str(tmp_path), NODE, 2, uid=2)]
    try:
        start = time.monotonic()
        first, second = query_steps([loc(tmp_path, 1), loc(tmp_path, 2)], Deadline(0.4), (0,),
                                    timeout=5, parallel=1)
        assert time.monotonic() - start < 1.5
        for answer, fake in ((first, fakes[0]), (second, fakes[1])):
            assert (answer.failure, answer.message) == (
                "timeout", "slurmstepd %s: time budget of the module exhausted" % fake.path)
        assert fakes[1].client_versions == []
    finally:
        for fake in fakes:
            fake.close()


def test_query_records_each_steps_version(tmp_path):
    fake = FakeStepd(str(tmp_path), NODE, 26, uid=3, version=0x2B00)
    step = loc(tmp_path, 26)
    try:
        [answer] = query_steps([step], Deadline(5), (0,))
        assert (answer.version, step.protocol_version, answer.uid, step.uid) == (
            0x2B00, 0x2B00, 3, 3)
    finally:
        fake.close()
