# SPDX-License-Identifier: GPL-3.0-or-later
"""The callerid client's answers to every kind of reply, peer and munged:
the exact error text (it ends up in the module's log line "unable to
retrieve callerid data from remote slurmd (<text>)"), the reply's C strings,
the credential check of each CommunicationParameters, and the time bounds
(connect, munged, partial replies)."""

import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from slurm_adopt import callerid, munge
from slurm_adopt import constants as C
from slurm_adopt.callerid import CallerConn, check_reply_hash, parse_reply, verify_reply
from slurm_adopt.log import Log

from test_callerid import (REAL_MUNGE, FakeSlurmd, _connected_pair, packstr, real_munged,
                           recv_exactly, reply_with_cred, v4)

BODY = struct.pack(">II", 4242, 0) + packstr("remote1")


def header(version=0x2600, flags=0, msg_type=5036, body_length=len(BODY), forward=0, ret=0,
           family=0):
    return (struct.pack(">HHHIHH", version, flags, msg_type, body_length, forward, ret)
            + struct.pack(">H", family))


def munge_auth(cred=b"MUNGE:reply:"):
    return struct.pack(">I", 101) + struct.pack(">I", len(cred) + 1) + cred + b"\0"


def local_conn(af=socket.AF_INET):
    if af == socket.AF_INET6:
        addr = socket.inet_pton(socket.AF_INET6, "::1")
        return CallerConn(addr, 5000, addr, 22, af)
    return CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, af)


def rpc(port, timeout=2.0, budget=5.0, munge_socket=None, log=None, conn=None, **kwargs):
    return callerid.callerid_rpc(conn or local_conn(), port, 0x2600, munge_socket, timeout,
                                 time.monotonic() + budget, log or Log(to_syslog=False),
                                 **kwargs)


@pytest.fixture
def fake_cred(monkeypatch):
    monkeypatch.setattr(callerid, "munge_encode", lambda payload, sock, timeout: b"MUNGE:fake:")


def until_closed(conn):
    """Keep the connection open until the client closes it (or the server's timeout)."""
    conn.settimeout(5)
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass


def unsigned(body, version=0x2600):
    """A reply without an auth section (SLURM_NO_AUTH_CRED, as 26.05 sends)."""
    return reply_with_cred(version, body, None, flags=C.SLURM_NO_AUTH_CRED)


# -- reply parsing: each broken reply has its own message ------------------------------

@pytest.mark.parametrize("message,text", [
    (header(version=0x2500) + munge_auth() + BODY,
     "reply has unsupported protocol version 0x2500"),
    (header() + struct.pack(">I", 102) + BODY, "reply has auth plugin 102, not munge"),
    (header(ret=1) + munge_auth() + BODY,
     "reply carries a ret_list, which a callerid reply never has"),
    (header(family=socket.AF_INET6) + struct.pack(">I", 4) + b"\0\0\0\1" + struct.pack(">H", 1)
     + munge_auth() + BODY, "reply header has a bad IPv6 address"),
    (header()[:12], "truncated reply (wanted 2 bytes at offset 12 of 12)"),
    # a field length far beyond the reply is refused before anything is read
    (header() + struct.pack(">I", 101) + struct.pack(">I", 0xFFFFFFFF) + b"x",
     "truncated reply (wanted 4294967295 bytes at offset 24 of 25)"),     # header 16, plugin 4
    (header(body_length=len(BODY) + 1) + munge_auth() + BODY,
     "truncated reply (wanted %d bytes at offset 37 of %d)" % (len(BODY) + 1, 37 + len(BODY))),
    (header(msg_type=8001, body_length=4) + munge_auth() + struct.pack(">I", 2017),
     "remote slurmd answered with error 2017"),
    (header(msg_type=1234, body_length=0) + munge_auth(), "unexpected reply message type 1234"),
])
def test_broken_replies_are_named(message, text):
    with pytest.raises(C.RpcError) as err:
        callerid.unpack_callerid_response(message)
    assert str(err.value) == text


def test_reply_credential_is_the_c_string_up_to_its_first_nul():
    reply = parse_reply(header() + munge_auth(b"MUNGE:abc:\0junk") + BODY)
    assert reply.credential == b"MUNGE:abc:"
    assert (reply.version, reply.msg_type, reply.body) == (0x2600, 5036, BODY)


@pytest.mark.parametrize("name,read", [
    (struct.pack(">I", 0), None),                       # packstr(NULL): no node name
    (struct.pack(">I", 6) + b"n1\0xy\0", "n1"),          # a C string ends at its NUL
    (struct.pack(">I", 4) + b"n\xff1\0", "n\ufffd1"),    # not UTF-8: replaced, never an error
])
def test_node_name_is_read_as_a_c_string(name, read):
    body = struct.pack(">II", 77, 0) + name
    message = header(body_length=len(body)) + munge_auth() + body
    assert callerid.unpack_callerid_response(message) == (77, read)


# -- the hash in the reply's credential (_check_hash) ---------------------------------

def reply_of(body=BODY, msg_type=5036):
    return callerid.Reply(0x2600, msg_type, b"MUNGE:x:", body)


@pytest.mark.parametrize("payload,zero,null,text", [
    (b"", False, True, "reply credential carries no hash (block_null_hash)"),
    (struct.pack(">BH", 1, 5036), True, False, "reply credential carries no valid hash"),
    (struct.pack(">BH", 1, 5035), False, False, "reply credential carries no valid hash"),
    (struct.pack(">BHB", 1, 5036, 0), False, False, "reply credential carries no valid hash"),
    (b"\x03" + b"\0" * 32, False, False, "reply hash type 3 is not supported"),
    (b"\x00", False, False, "reply hash type 0 is not supported"),
    (callerid.body_hash(BODY + b"x", 5036), False, False,
     "reply body does not match its credential's hash"),
    (callerid.body_hash(BODY, 5035), False, False, "reply body does not match its credential's hash"),
])
def test_reply_hash_refusals(payload, zero, null, text):
    with pytest.raises(C.RpcError) as err:
        check_reply_hash(reply_of(), payload, zero, null)
    assert str(err.value) == text


@pytest.mark.parametrize("payload,zero,null", [
    (b"", False, False),                                  # no hash: taken unless block_null_hash
    (struct.pack(">BH", 1, 5036), False, True),           # "none" form: unless block_zero_hash
    (callerid.body_hash(BODY, 5036), True, True),         # the K12 hash of the body: always
])
def test_reply_hash_accepted(payload, zero, null):
    assert check_reply_hash(reply_of(), payload, zero, null) is None


def test_body_hash_is_the_k12_form_libslurm_sends():
    """slurm-internals.md: 33 bytes, type 2, then K12(body, custom = msg_type big-endian)."""
    from slurm_adopt.k12 import k12
    payload = callerid.body_hash(b"abc", 5035)
    assert len(payload) == 33 and payload[:1] == b"\x02"
    assert payload[1:] == k12(b"abc", b"\x13\xab", 32)


# -- the credential check with the real munged ----------------------------------------

def signed(payload):
    return munge.encode(payload, REAL_MUNGE, 3)


def check(cred, end_in=3.0, log=None, trusted=(0,), munge_socket=REAL_MUNGE, zero=False,
          null=False):
    reply = callerid.Reply(0x2600, 5036, cred, BODY)
    return verify_reply(reply, munge_socket, time.monotonic() + end_in, trusted,
                        log or Log(to_syslog=False), zero, null)


def test_no_time_left_for_the_credential_check():
    with pytest.raises(C.RpcError) as err:
        check(b"MUNGE:never-decoded:", end_in=-0.01, munge_socket="/nonexistent")
    assert str(err.value) == "no time left to check the reply's credential"


def test_credential_check_within_the_last_second():
    real_munged()
    assert check(signed(callerid.body_hash(BODY, 5036)), end_in=0.9) is None


def test_invalid_credential_is_named_by_munges_error():
    real_munged()
    with pytest.raises(C.RpcError) as err:
        check(b"MUNGE:garbage:")
    assert str(err.value) == "reply credential is invalid: invalid credential format"


def test_credential_of_a_user_is_named_with_the_uid():
    real_munged()
    import pwd
    nobody = pwd.getpwnam("nobody")
    here = os.path.dirname(os.path.dirname(callerid.__file__))
    code = ("import sys; sys.path.insert(0, %r); from slurm_adopt import munge, callerid; "
            "sys.stdout.buffer.write(munge.encode(callerid.body_hash(bytes.fromhex(%r), 5036), "
            "None, 3))" % (here, BODY.hex()))
    cred = subprocess.run([sys.executable, "-I", "-c", code], stdout=subprocess.PIPE,
                          timeout=30, check=True,
                          preexec_fn=lambda: (os.setgid(nobody.pw_gid),
                                              os.setuid(nobody.pw_uid))).stdout
    with pytest.raises(C.RpcError) as err:
        check(cred)
    assert str(err.value) == ("reply credential is from uid %u, not from root or a Slurm user"
                              % nobody.pw_uid)
    assert check(cred, trusted=(0, nobody.pw_uid)) is None       # a Slurm user: trusted


def test_replayed_credential_is_taken_and_logged_at_debug2():
    """Debian's auth/munge (--enable-multiple-slurmd) takes a replayed
    credential; the C module logs it at debug2 with this wording."""
    real_munged()
    cred = signed(callerid.body_hash(BODY, 5036))
    first, second = Log(to_syslog=False), Log(to_syslog=False)
    assert check(cred, log=first) is None
    assert first.lines == []
    assert check(cred, log=second) is None
    assert second.lines == [(C.LOG_LEVEL_DEBUG2, "We had a replayed cred, but this is expected "
                                                 "in multiple slurmd mode.")]


def test_credential_without_payload_and_block_null_hash():
    real_munged()
    cred = signed(b"")
    assert check(cred) is None
    with pytest.raises(C.RpcError) as err:
        check(cred, null=True)
    assert str(err.value) == "reply credential carries no hash (block_null_hash)"


def test_the_configured_munge_socket_checks_the_reply(monkeypatch):
    real_munged()
    cred = signed(callerid.body_hash(BODY, 5036))
    monkeypatch.setattr(munge, "DEFAULT_SOCKET", "/nonexistent/munge.socket")
    assert check(cred, munge_socket=REAL_MUNGE) is None


@pytest.fixture
def silent_munged(tmp_path):
    """A munge socket that accepts and never answers."""
    path = str(tmp_path / "munge.socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    yield path
    server.close()


@pytest.mark.timeout(20)
def test_a_silent_munged_costs_no_more_than_the_budget_left(silent_munged):
    start = time.monotonic()
    with pytest.raises(C.MungeError):
        check(b"MUNGE:x:", end_in=0.5, munge_socket=silent_munged)
    assert time.monotonic() - start < 1.2
    start = time.monotonic()
    with pytest.raises((C.MungeError, C.RpcError)):
        rpc(1, timeout=0.5, munge_socket=silent_munged)
    assert time.monotonic() - start < 1.2


# -- the exchange -----------------------------------------------------------------------

def test_rpc_uses_the_configured_munge_socket_both_ways(monkeypatch):
    real_munged()
    slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, BODY,
                                                    signed(callerid.body_hash(BODY, 5036))))
    monkeypatch.setattr(munge, "DEFAULT_SOCKET", "/nonexistent/munge.socket")
    try:
        assert rpc(slurmd.port, munge_socket=REAL_MUNGE) == (4242, "remote1")
    finally:
        slurmd.close()
    with pytest.raises(C.MungeError) as err:
        rpc(1, munge_socket="/nonexistent/other.socket")
    assert "munged is not reachable at /nonexistent/other.socket" in str(err.value)


def test_rpc_with_block_null_hash_refuses_an_empty_payload():
    real_munged()
    cred = signed(b"")
    for blocked in (False, True):
        slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, BODY, cred))
        try:
            if blocked:
                with pytest.raises(C.RpcError) as err:
                    rpc(slurmd.port, block_null_hash=True)
                assert str(err.value) == "reply credential carries no hash (block_null_hash)"
            else:
                assert rpc(slurmd.port) == (4242, "remote1")
        finally:
            slurmd.close()


def test_rpc_logs_a_replayed_reply_credential():
    real_munged()
    cred = signed(callerid.body_hash(BODY, 5036))
    munge.decode(cred, REAL_MUNGE, 3)                 # the first decode: now it is a replay
    slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, BODY, cred))
    log = Log(to_syslog=False)
    try:
        assert rpc(slurmd.port, log=log) == (4242, "remote1")
    finally:
        slurmd.close()
    assert log.lines == [(C.LOG_LEVEL_DEBUG2, "We had a replayed cred, but this is expected in "
                                              "multiple slurmd mode.")]


def test_rpc_with_no_time_left(fake_cred):
    with pytest.raises(C.RpcError) as err:
        rpc(1, budget=-0.01)
    assert str(err.value) == "no time left for the callerid RPC"


def test_rpc_to_a_closed_port_names_the_address(fake_cred):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(C.RpcError) as err:
        rpc(port)
    assert str(err.value) == "slurmd at 127.0.0.1 port %d: [Errno 111] Connection refused" % port


@pytest.mark.timeout(10)
def test_rpc_connect_that_never_completes_is_bounded(fake_cred):
    """A listener whose backlog is full drops the SYN: connect() would wait
    for the kernel's retries; ours ends at the timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        start = time.monotonic()
        with pytest.raises(C.RpcError) as err:
            rpc(port, timeout=0.5)
        assert time.monotonic() - start < 1.2
        assert str(err.value) == "no answer from slurmd at 127.0.0.1 port %d within 0.5s" % port
    finally:
        filler.close()
        server.close()


def test_rpc_length_prefix_is_unsigned(fake_cred):
    def huge(conn):
        recv_exactly(conn, 4)
        conn.sendall(struct.pack(">I", 0x80000000))
        until_closed(conn)
    slurmd = FakeSlurmd(behaviour=huge)
    try:
        with pytest.raises(C.RpcError) as err:
            rpc(slurmd.port)
        assert str(err.value) == ("reply of 2147483648 bytes is longer than a callerid reply "
                                  "can be")
    finally:
        slurmd.close()


def test_rpc_takes_a_reply_of_exactly_the_maximum_size(fake_cred):
    """MAX_RPC_REPLY bounds the reply, and a reply of that size is read."""
    body = struct.pack(">II", 31, 0) + packstr("big")
    message = unsigned(body)
    message += b"\0" * (C.MAX_RPC_REPLY - len(message))   # bytes after the body are not read
    slurmd = FakeSlurmd(lambda req: message)
    try:
        assert rpc(slurmd.port) == (31, "big")
    finally:
        slurmd.close()


@pytest.mark.timeout(10)
def test_rpc_reads_a_reply_that_arrives_in_pieces(fake_cred):
    body = struct.pack(">II", 55, 0) + packstr("pieces")
    message = unsigned(body)
    framed = struct.pack(">I", len(message)) + message
    cuts = [0, 2, 5, 9, 20, len(framed)]

    def trickle(conn):
        size = struct.unpack(">I", recv_exactly(conn, 4))[0]
        recv_exactly(conn, size)
        for begin, end in zip(cuts, cuts[1:]):
            conn.sendall(framed[begin:end])
            time.sleep(0.05)
        until_closed(conn)
    slurmd = FakeSlurmd(behaviour=trickle)
    try:
        assert rpc(slurmd.port) == (55, "pieces")
    finally:
        slurmd.close()


def test_rpc_peer_closing_mid_reply_is_named(fake_cred):
    def half(conn):
        recv_exactly(conn, struct.unpack(">I", recv_exactly(conn, 4))[0])
        conn.sendall(b"\0\0")
    slurmd = FakeSlurmd(behaviour=half)
    try:
        with pytest.raises(C.RpcError) as err:
            rpc(slurmd.port)
        assert str(err.value) == "connection closed after 2 of 4 bytes"
    finally:
        slurmd.close()


def test_rpc_over_ipv6_loopback_in_this_process(fake_cred):
    """The client's IPv6 address is the one connected to, and the request
    carries the whole 16-byte address and AF_INET6."""
    try:
        slurmd = FakeSlurmd(lambda req: unsigned(BODY), family=socket.AF_INET6, host="::1")
    except OSError as exc:
        pytest.fail("no IPv6 loopback here: %s" % exc)
    conn = local_conn(socket.AF_INET6)
    try:
        assert rpc(slurmd.port, conn=conn) == (4242, "remote1")
    finally:
        slurmd.close()
    body = slurmd.requests[0][-52:]
    assert body == callerid.pack_callerid_body(conn)
    assert body[:20] == struct.pack(">I", 16) + socket.inet_pton(socket.AF_INET6, "::1")
    assert struct.unpack(">I", body[-4:])[0] == socket.AF_INET6


# -- the ssh connection of this process or of another -------------------------------

def _pair(family=socket.AF_INET, host="127.0.0.1"):
    return _connected_pair(family, host)


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_own_socket_conn_reads_both_ends(family, host):
    """From sshd's side (the accepted socket): src is the ssh client, dst is sshd."""
    client, accepted = _pair(family, host)
    try:
        conn = callerid._own_socket_conn(accepted.fileno())
        raw = socket.inet_pton(family, host).ljust(16, b"\0")
        assert (conn.ip_src, conn.port_src, conn.ip_dst, conn.port_dst, conn.af) == (
            raw, client.getsockname()[1], raw, accepted.getsockname()[1], family)
        assert conn.src_text == host
    finally:
        client.close()
        accepted.close()


def test_own_socket_conn_of_sockets_that_are_no_connection():
    unix_a, unix_b = socket.socketpair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", 9))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    fresh = socket.socket()
    try:
        assert callerid._own_socket_conn(unix_a.fileno()) is None     # never in a TCP table
        assert callerid._own_socket_conn(udp.fileno()) is None
        assert callerid._own_socket_conn(listener.fileno()) is callerid._UNKNOWN
        assert callerid._own_socket_conn(fresh.fileno()) is callerid._UNKNOWN
        r, w = os.pipe()
        os.close(w)
        os.close(r)
        assert callerid._own_socket_conn(r) is callerid._UNKNOWN       # closed: EBADF
    finally:
        for sock in (unix_a, unix_b, udp, listener, fresh):
            sock.close()


def test_own_socket_conn_of_a_descriptor_that_is_no_socket():
    """A descriptor that is not (or no longer) a socket: "ask the tables",
    and the duplicate made to look at it is closed."""
    r, w = os.pipe()
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        assert callerid._own_socket_conn(r) is callerid._UNKNOWN
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(r)
        os.close(w)


def test_own_socket_conn_skips_a_stream_socket_that_is_not_tcp():
    """An MPTCP socket is SOCK_STREAM but not IPPROTO_TCP: it is in no TCP
    table, so the C module never finds it either."""
    mptcp = 262                                  # IPPROTO_MPTCP (Linux 5.6+)
    try:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, mptcp)
    except OSError as exc:
        pytest.fail("no MPTCP in this kernel: %s" % exc)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM, mptcp)
    client.connect(server.getsockname())
    accepted, _peer = server.accept()
    try:
        assert callerid._own_socket_conn(client.fileno()) is None
    finally:
        for sock in (client, accepted, server):
            sock.close()


def test_own_netinfo_defaults_to_this_process():
    client, accepted = _pair()
    try:
        assert vars(callerid.own_netinfo()) == vars(callerid.own_netinfo("self"))
    finally:
        client.close()
        accepted.close()


@pytest.mark.timeout(20)
def test_own_netinfo_of_another_process_reads_that_process(tmp_path):
    """pam_exec asks for sshd's connection, not the helper's own: the same fd
    number in this process holds another connection, which must not answer."""
    theirs_client, theirs = _pair()
    ours_client, ours = _pair()
    number = theirs.fileno()
    child = subprocess.Popen(["sleep", "30"], pass_fds=[number], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.dup2(ours.fileno(), number)          # this process: fd <number> is our connection now
        conn = callerid.own_netinfo(child.pid)
        assert conn is not None
        assert (conn.port_src, conn.port_dst) == (theirs_client.getsockname()[1],
                                                  theirs_client.getpeername()[1])
    finally:
        child.kill()
        child.wait()
        for sock in (theirs_client, theirs, ours_client, ours):
            sock.close()


def test_own_netinfo_of_this_process_asks_its_socket_not_the_tables(monkeypatch):
    """pam_python: the first socket of sshd is the connection; it is asked
    directly, /proc/self/net/tcp* (a walk of the kernel's whole table) is
    not read. The connection is put on the lowest free descriptor, so that
    it is this process's first socket that can be in a TCP table."""
    client, accepted = _pair()
    low = os.dup(accepted.fileno())
    accepted_port = accepted.getsockname()[1]
    accepted.close()                  # sshd's end is now only `low`; the ssh client's end stays
    inet_below = []
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        if fd >= low:
            break
        try:
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue                                # not a socket
        with probe:
            if probe.family in (socket.AF_INET, socket.AF_INET6):
                inet_below.append(fd)
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(callerid, "open", spy, raising=False)
    try:
        assert inet_below == [], "an earlier test left TCP sockets open: %s" % inet_below
        conn = callerid.own_netinfo("self")
        assert (conn.port_src, conn.port_dst) == (client.getsockname()[1], accepted_port)
        assert opened == []
    finally:
        os.close(low)
        client.close()


def test_own_netinfo_on_a_kernel_without_ipv6(tmp_path):
    """No /proc/<pid>/net/tcp6 (IPv6 disabled): the tables there are are read."""
    client, accepted = _pair()
    unix_a, unix_b = socket.socketpair()
    (tmp_path / "1" / "fd").mkdir(parents=True)
    (tmp_path / "1" / "net").mkdir()
    os.symlink("/proc/self/net/tcp", str(tmp_path / "1" / "net" / "tcp"))
    try:
        os.symlink("/proc/self/fd/%d" % unix_a.fileno(), str(tmp_path / "1" / "fd" / "3"))
        assert callerid.own_netinfo(1, proc=str(tmp_path)) is None
        os.symlink("/proc/self/fd/%d" % accepted.fileno(), str(tmp_path / "1" / "fd" / "4"))
        conn = callerid.own_netinfo(1, proc=str(tmp_path))
        assert (conn.port_src, conn.port_dst, conn.af) == (
            client.getsockname()[1], accepted.getsockname()[1], socket.AF_INET)
    finally:
        for sock in (client, accepted, unix_a, unix_b):
            sock.close()


# -- /proc/net/tcp -------------------------------------------------------------------------

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def test_proc_net_tcp_address_with_a_high_last_octet():
    """10.0.0.200 is C800000A in the table: a word of 2^31 or more."""
    text = HEADER + ("   0: C800000A:0016 FE01A8C0:D431 01 00000000:00000000 00:00000000 "
                     "00000000     0        0 5151 1\n")
    laddr, lport, raddr, rport = callerid.parse_proc_net_tcp(text)[5151]
    assert laddr == socket.inet_aton("10.0.0.200") + b"\0" * 12 and lport == 22
    assert raddr[:4] == socket.inet_aton("192.168.1.254") and rport == 0xD431


def test_proc_net_tcp_line_cut_after_the_inode():
    """Ten fields (up to the inode) are a line; nine are not."""
    line = "   0: 0100007F:0016 0100007F:1111 01 00000000:00000000 00:00000000 00000000 0 0 4242"
    assert 4242 in callerid.parse_proc_net_tcp(HEADER + line + "\n")
    assert callerid.parse_proc_net_tcp(HEADER + line.rsplit(" ", 1)[0] + "\n") == {}


def test_find_inode_with_a_decoy_after_the_right_line():
    right = ("   0: 0100007F:0016 0100007F:4444 01 00000000:00000000 00:00000000 00000000 "
             "    0        0 4242 1\n")
    decoy = ("   1: 0100007F:0016 0100007F:5555 01 00000000:00000000 00:00000000 00000000 "
             " 4242        0 99 1\n")
    assert callerid.find_inode(HEADER + right + decoy, 4242)[3] == 0x4444
    assert callerid.find_inode(HEADER + decoy + right, 4242)[3] == 0x4444
