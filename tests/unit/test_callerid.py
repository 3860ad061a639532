# SPDX-License-Identifier: GPL-3.0-or-later
"""Finding the ssh connection and the REQUEST_NETWORK_CALLERID wire format."""

import os
import socket
import struct
import sys
import threading
import time

import pytest

from slurm_adopt import callerid, munge
from slurm_adopt import constants as C
from slurm_adopt.callerid import (CallerConn, own_netinfo, pack_callerid_request,
                                  parse_proc_net_tcp, unpack_callerid_response)
from slurm_adopt.k12 import k12
from slurm_adopt.log import Log


def v4(text):
    return socket.inet_aton(text) + b"\0" * 12


def test_request_bytes_match_the_reference_example():
    """slurm-internals.md 3.3: IPv4 10.0.0.5:40000 -> 10.0.0.9:22, protocol 22.05."""
    cred = b"MUNGE:abc:"
    conn = CallerConn(v4("10.0.0.5"), 40000, v4("10.0.0.9"), 22, socket.AF_INET)
    msg = pack_callerid_request(0x2600, cred, conn)
    length = 16 + (4 + 4 + len(cred) + 1) + 52
    assert msg[:4] == struct.pack(">I", length)
    assert msg[4:20] == bytes.fromhex("2600 0000 13AB 00000034 0000 0000 0000".replace(" ", ""))
    assert msg[20:24] == bytes.fromhex("00000065")
    assert msg[24:28] == struct.pack(">I", len(cred) + 1) and msg[28:28 + len(cred) + 1] == cred + b"\0"
    body = msg[28 + len(cred) + 1:]
    assert body == (bytes.fromhex("000000100A000005") + b"\0" * 12
                    + bytes.fromhex("000000100A000009") + b"\0" * 12
                    + bytes.fromhex("00009C40 00000016 00000002".replace(" ", "")))
    assert len(body) == 52


def response(version, msg_type, body, family=0):
    header = struct.pack(">HHHIHH", version, 0, msg_type, len(body), 0, 0) + struct.pack(">H", family)
    if family == socket.AF_INET:
        header += struct.pack(">IH", 0x7F000001, 6818)
    cred = b"MUNGE:reply:\0"
    return header + struct.pack(">I", 101) + struct.pack(">I", len(cred)) + cred + body


def packstr(text):
    raw = text.encode() + b"\0"
    return struct.pack(">I", len(raw)) + raw


@pytest.mark.parametrize("version", [0x2600, 0x2A00, 0x2B00])
def test_response_before_25_11(version):
    body = struct.pack(">II", 4242, 0) + packstr("node9")
    assert unpack_callerid_response(response(version, 5036, body)) == (4242, "node9")


@pytest.mark.parametrize("version", [0x2C00, 0x2D00])
def test_response_from_25_11_carries_a_step_id(version):
    body = struct.pack(">QIII", 0xABCDEF, 777, C.SLURM_EXTERN_CONT, C.NO_VAL) + struct.pack(">I", 0)
    body += packstr("node3")
    assert unpack_callerid_response(response(version, 5036, body, socket.AF_INET)) == (777, "node3")


def test_response_job_unknown():
    body = struct.pack(">II", C.NO_VAL, 0) + packstr("n")
    assert unpack_callerid_response(response(0x2600, 5036, body))[0] == C.NO_VAL


def test_slurm_rc_zero_means_unknown_not_success_with_garbage():
    assert unpack_callerid_response(response(0x2600, 8001, struct.pack(">I", 0))) == (C.NO_VAL, None)


def test_slurm_rc_error_and_bad_replies():
    with pytest.raises(C.RpcError):
        unpack_callerid_response(response(0x2600, 8001, struct.pack(">I", 2017)))
    with pytest.raises(C.RpcError):
        unpack_callerid_response(response(0x2600, 1234, b""))
    with pytest.raises(C.RpcError):
        unpack_callerid_response(response(0x2600, 5036, b"\0\0")[:-1])


def test_parse_proc_net_tcp_v4_and_v6():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 0100007F:0016 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5555 1\n")
    table = parse_proc_net_tcp(text)
    laddr, lport, raddr, rport = table[5555]
    assert laddr[:4] == socket.inet_aton("127.0.0.1") and lport == 22 and rport == 0xD431
    text6 = ("  sl  local_address                         remote_address    ...\n"
             "   0: 00000000000000000000000001000000:0016 00000000000000000000000001000000:A000 01 "
             "00000000:00000000 00:00000000 00000000 0 0 7777 1\n")
    laddr, lport, _raddr, _rport = parse_proc_net_tcp(text6)[7777]
    assert laddr == socket.inet_pton(socket.AF_INET6, "::1") and lport == 22


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_own_netinfo_finds_this_processes_tcp_connection(family, host):
    server = socket.socket(family, socket.SOCK_STREAM)
    try:
        server.bind((host, 0))
    except OSError:
        pytest.skip("no %s loopback on this machine" % host)
    server.listen(1)
    client = socket.create_connection((host, server.getsockname()[1]))
    accepted, _peer = server.accept()
    server.close()            # only the two connected sockets remain as TCP sockets
    try:
        conn = own_netinfo("self")
        assert conn is not None and conn.af == family
        ends = {(conn.src_text, conn.port_src), (host, conn.port_dst)}
        assert (host, client.getsockname()[1]) in ends or (host, accepted.getsockname()[1]) in ends
    finally:
        client.close()
        accepted.close()


class FakeSlurmd(object):
    """A TCP server answering one callerid request per connection with
    reply(request_bytes) (the raw reply after the length prefix), or with
    a custom behaviour(conn)."""

    def __init__(self, reply=None, behaviour=None, family=socket.AF_INET, host="127.0.0.1"):
        self.server = socket.socket(family, socket.SOCK_STREAM)
        self.server.bind((host, 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.requests = []
        self.reply = reply
        self.behaviour = behaviour
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _peer = self.server.accept()
        except OSError:
            return
        with conn:
            if self.behaviour:
                self.behaviour(conn)
                return
            size = struct.unpack(">I", recv_exactly(conn, 4))[0]
            data = recv_exactly(conn, size)
            self.requests.append(data)
            out = self.reply(data)
            conn.sendall(struct.pack(">I", len(out)) + out)

    def close(self):
        self.server.close()
        self.thread.join(5)


def recv_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def reply_with_cred(version, body, cred, msg_type=5036, flags=0):
    header = struct.pack(">HHHIHHH", version, flags, msg_type, len(body), 0, 0, 0)
    if flags & C.SLURM_NO_AUTH_CRED:
        return header + body
    return header + struct.pack(">I", 101) + struct.pack(">I", len(cred) + 1) + cred + b"\0" + body


def real_munged():
    if not os.path.exists(REAL_MUNGE):
        if os.environ.get("ADOPT_LAB_REQUIRED") or os.environ.get("CI"):
            pytest.fail("no munged at %s" % REAL_MUNGE)
        pytest.skip("no munged on this machine")


REAL_MUNGE = "/run/munge/munge.socket.2"
LOG = Log(to_syslog=False)


def rpc(conn, port, timeout=2, budget=5, **kwargs):
    return callerid.callerid_rpc(conn, port, 0x2600, None, timeout, time.monotonic() + budget,
                                 LOG, **kwargs)


def signed_reply(body, version=0x2600):
    """A reply whose credential, from the real munged, binds body as
    slurmd's does (K12 of the body, custom string = message type)."""
    cred = munge.encode(callerid.body_hash(body, 5036), REAL_MUNGE, 3)
    return reply_with_cred(version, body, cred)


def test_rpc_round_trip_against_a_fake_slurmd():
    """Framing on a real TCP socket; the request's credential (from the real
    munged) carries the K12 hash of the request body, as libslurm sends it,
    and the reply's credential is checked against its body."""
    real_munged()
    body = struct.pack(">II", 31337, 0) + packstr("remote1")
    slurmd = FakeSlurmd(lambda req: signed_reply(body))
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        assert rpc(conn, slurmd.port) == (31337, "remote1")
    finally:
        slurmd.close()
    request = slurmd.requests[0]
    assert struct.unpack(">HHHI", request[:10]) == (0x2600, 0, 5035, 52)
    cred_len = struct.unpack(">I", request[20:24])[0]
    cred = request[24:24 + cred_len].rstrip(b"\0")
    req_body = request[24 + cred_len:]
    assert req_body == callerid.pack_callerid_body(conn)
    decoded = munge.decode(cred, REAL_MUNGE, 3)
    assert decoded.error == 0
    assert decoded.payload == b"\x02" + k12(req_body, b"\x13\xab", 32)


@pytest.mark.parametrize("tamper", ["body", "hash-type", "zero-hash", "garbage-cred", "user-cred"])
def test_rpc_reply_credential_is_checked(tamper):
    """auth_g_verify + _check_hash: a reply whose credential does not decode,
    does not bind its body, or (ours only) was not made by root is refused."""
    real_munged()
    body = struct.pack(">II", 4242, 0) + packstr("remote1")
    if tamper == "body":
        other = struct.pack(">II", 4343, 0) + packstr("remote1")
        cred = munge.encode(callerid.body_hash(other, 5036), REAL_MUNGE, 3)
    elif tamper == "hash-type":
        cred = munge.encode(b"\x03" + b"\0" * 32, REAL_MUNGE, 3)
    elif tamper == "zero-hash":
        cred = munge.encode(struct.pack(">BH", 1, 5036), REAL_MUNGE, 3)
    elif tamper == "garbage-cred":
        cred = b"MUNGE:garbage:"
    else:
        import pwd
        import subprocess
        nobody = pwd.getpwnam("nobody")
        here = os.path.dirname(os.path.dirname(callerid.__file__))
        code = ("import sys; sys.path.insert(0, %r); from slurm_adopt import munge, callerid; "
                "sys.stdout.buffer.write(munge.encode(callerid.body_hash(bytes.fromhex(%r), 5036), "
                "None, 3))" % (here, body.hex()))
        p = subprocess.run([sys.executable, "-I", "-c", code], stdout=subprocess.PIPE, timeout=30,
                           check=True, preexec_fn=lambda: (os.setgid(nobody.pw_gid),
                                                           os.setuid(nobody.pw_uid)))
        cred = p.stdout

    def make(_request):
        return reply_with_cred(0x2600, body, cred)
    slurmd = FakeSlurmd(make)
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        with pytest.raises(C.RpcError):
            rpc(conn, slurmd.port, block_zero_hash=(tamper == "zero-hash"))
    finally:
        slurmd.close()


def test_rpc_zero_hash_reply_is_accepted_unless_blocked():
    real_munged()
    body = struct.pack(">II", 4242, 0) + packstr("remote1")
    cred = munge.encode(struct.pack(">BH", 1, 5036), REAL_MUNGE, 3)
    slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2600, body, cred))
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        assert rpc(conn, slurmd.port)[0] == 4242
    finally:
        slurmd.close()


def test_rpc_reply_without_credential_is_taken_as_26_05_sends_it():
    """26.05's slurmd sets SLURM_NO_AUTH_CRED on replies: no auth section."""
    body = struct.pack(">QIII", 1, 777, C.SLURM_EXTERN_CONT, C.NO_VAL) + struct.pack(">I", 0)
    body += packstr("node3")
    slurmd = FakeSlurmd(lambda req: reply_with_cred(0x2D00, body, None, flags=C.SLURM_NO_AUTH_CRED))
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(callerid, "munge_encode", lambda payload, sock, timeout: b"MUNGE:fake:")
            assert rpc(conn, slurmd.port) == (777, "node3")
    finally:
        slurmd.close()


@pytest.fixture
def fake_cred(monkeypatch):
    monkeypatch.setattr(callerid, "munge_encode", lambda payload, sock, timeout: b"MUNGE:fake:")


@pytest.mark.timeout(10)
def test_rpc_to_a_silent_slurmd_is_bounded(fake_cred):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)          # accepts (kernel backlog) but never answers
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        start = time.monotonic()
        with pytest.raises(C.RpcError) as err:
            rpc(conn, server.getsockname()[1], timeout=0.5)
        assert time.monotonic() - start < 1.5
        assert "within" in str(err.value)
    finally:
        server.close()


@pytest.mark.timeout(20)
def test_rpc_to_a_dribbling_peer_ends_at_the_deadline(fake_cred):
    """A plausible length, then one byte every 0.2 s: the whole exchange
    ends at the timeout, not at timeout x bytes (issue 9, item 3)."""
    def dribble(conn):
        recv_exactly(conn, 4)
        conn.sendall(struct.pack(">I", 200))
        for _i in range(200):
            try:
                conn.sendall(b"\0")
            except OSError:
                return
            time.sleep(0.2)
    slurmd = FakeSlurmd(behaviour=dribble)
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        start = time.monotonic()
        with pytest.raises(C.RpcError):
            rpc(conn, slurmd.port, timeout=1.0)
        assert time.monotonic() - start < 1.6
        start = time.monotonic()
        slurmd2 = FakeSlurmd(behaviour=dribble)
        with pytest.raises(C.RpcError):        # the module's budget ends it first
            rpc(conn, slurmd2.port, timeout=10.0, budget=0.7)
        assert time.monotonic() - start < 1.3
        slurmd2.close()
    finally:
        slurmd.close()


@pytest.mark.timeout(10)
def test_rpc_reply_longer_than_a_callerid_reply_is_refused_at_once(fake_cred):
    def huge(conn):
        recv_exactly(conn, 4)
        conn.sendall(struct.pack(">I", C.MAX_RPC_REPLY + 1))
        time.sleep(3)
    slurmd = FakeSlurmd(behaviour=huge)
    conn = CallerConn(v4("127.0.0.1"), 5000, v4("127.0.0.1"), 22, socket.AF_INET)
    try:
        start = time.monotonic()
        with pytest.raises(C.RpcError) as err:
            rpc(conn, slurmd.port, timeout=5)
        assert "longer than a callerid reply" in str(err.value)
        assert time.monotonic() - start < 1
    finally:
        slurmd.close()


IPV6_RPC = r"""
import os, socket, struct, subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
from slurm_adopt import callerid
from slurm_adopt.log import Log
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "-6", "addr", "add", "fd00:5a:1::7/128", "dev", "lo", "nodad"], check=True)
server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
for _ in range(50):
    try:
        server.bind(("fd00:5a:1::7", 0)); break
    except OSError:
        time.sleep(0.05)
server.listen(1)
callerid.munge_encode = lambda payload, sock, timeout: b"MUNGE:fake:"
seen = {}
def serve():
    conn, peer = server.accept()
    size = struct.unpack(">I", conn.recv(4))[0]
    data = b""
    while len(data) < size:
        data += conn.recv(size - len(data))
    seen["body"] = data[-52:]
    body = struct.pack(">II", 6006, 0) + struct.pack(">I", 3) + b"v6\0"
    reply = struct.pack(">HHHIHHH", 0x2600, 0x40, 5036, len(body), 0, 0, 0) + body
    conn.sendall(struct.pack(">I", len(reply)) + reply)
    conn.close()
threading.Thread(target=serve, daemon=True).start()
src = socket.inet_pton(socket.AF_INET6, "fd00:5a:1::7")
conn = callerid.CallerConn(src, 40000, socket.inet_pton(socket.AF_INET6, "::1"), 22, socket.AF_INET6)
print(callerid.callerid_rpc(conn, server.getsockname()[1], 0x2600, None, 10, time.monotonic() + 20, Log(to_syslog=False)))
print(seen["body"][:20].hex())
"""


@pytest.mark.timeout(90)
def test_rpc_over_ipv6_goes_to_the_ssh_clients_address():
    """The IPv6 RPC is sent to the client's own address (here fd00:5a:1::7 in
    a network namespace of its own), not to ::1 or any other."""
    import shutil
    import subprocess
    if not (shutil.which("unshare") and shutil.which("ip")) or os.getuid() != 0:
        pytest.fail("needs root, unshare(1) and ip(8)")
    here = os.path.dirname(os.path.dirname(callerid.__file__))
    p = subprocess.run(["unshare", "-n", sys.executable, "-I", "-c", IPV6_RPC, here],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode().splitlines()
    assert out[0] == "(6006, 'v6')"
    assert out[1] == "00000010" + "fd00005a000100000000000000000007"


def test_forwarded_reply_header_of_23_11_and_24_11():
    """forward.cnt > 0: nodelist, timeout, tree width, net_cred only with
    SLURM_PACK_ADDRS (0x80, 23.11+), tree depth from 24.11."""
    body = struct.pack(">II", 99, 0) + packstr("n1")

    def header(version, flags):
        fwd = struct.pack(">H", 1) + packstr("n[1-2]") + struct.pack(">IH", 10, 50)
        if flags & 0x80:
            fwd += packstr("netcred")
        if version >= 0x2A00:
            fwd += struct.pack(">H", 2)
        return (struct.pack(">HHHI", version, flags | 0x40, 5036, len(body)) + fwd
                + struct.pack(">HH", 0, 0))
    for version, flags in ((0x2800, 0), (0x2800, 0x80), (0x2A00, 0x80), (0x2A00, 0x04),
                           (0x2B00, 0x80)):
        assert unpack_callerid_response(header(version, flags) + body) == (99, "n1"), (version, flags)


def test_reply_header_with_an_ipv6_origin_address():
    body = struct.pack(">II", 98, 0) + packstr("n6")
    head = struct.pack(">HHHIHH", 0x2600, 0x40, 5036, len(body), 0, 0)
    head += struct.pack(">H", socket.AF_INET6) + struct.pack(">I", 16) + b"\0" * 15 + b"\1"
    head += struct.pack(">H", 6818)
    assert unpack_callerid_response(head + body) == (98, "n6")


def test_munge_unreachable_is_an_rpc_error(tmp_path):
    with pytest.raises(C.RpcError) as err:
        callerid.munge_encode(b"\x01\x13\xab", str(tmp_path / "no.socket"), 1)
    assert "munged is not reachable" in str(err.value)


HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def tcp_line(n, local, remote, uid, timeout, inode):
    return ("%4d: %s %s 01 00000000:00000000 00:00000000 00000000 %5d %8d %d 1 "
            "0000000000000000 20 4 30 10 -1\n" % (n, local, remote, uid, timeout, inode))


def test_find_inode_only_matches_the_inode_field():
    """Decoys: the inode's digits as the uid, as the timeout, inside a longer
    inode, and the header; only the line whose inode field is it counts."""
    text = (HEADER
            + tcp_line(0, "0100007F:0016", "0100007F:1111", 4242, 0, 99)
            + tcp_line(1, "0100007F:0016", "0100007F:2222", 0, 4242, 98)
            + tcp_line(2, "0100007F:0016", "0100007F:3333", 0, 0, 142420)
            + tcp_line(3, "0100007F:0016", "0100007F:4444", 0, 0, 4242))
    table = parse_proc_net_tcp(text)
    assert callerid.find_inode(text, 4242) == table[4242]
    assert callerid.find_inode(text, 4242)[3] == 0x4444
    assert callerid.find_inode(text, 4243) is None
    assert callerid.find_inode(text[:-1], 4242) == table[4242]   # no final newline
    assert callerid.find_inode("", 4242) is None


def test_find_inode_agrees_with_the_full_parse_on_this_machine():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)                  # at least one line with a real inode
    try:
        with open("/proc/self/net/tcp") as f:
            text = f.read()
        table = parse_proc_net_tcp(text)
        assert os.fstat(listener.fileno()).st_ino in table
        for inode, entry in table.items():
            if inode:                   # TIME_WAIT entries all have inode 0
                assert callerid.find_inode(text, inode) == entry
    finally:
        listener.close()


def test_own_netinfo_reads_tcp6_only_when_tcp_has_no_match(monkeypatch, tmp_path):
    """The kernel walks its whole connection table for every read of
    /proc/net/tcp*: an IPv4 connection must not cost a read of tcp6. A
    /proc/<pid> look-alike whose only fd is this process's IPv4 connection
    (a link to /proc/self/fd/N) and whose net/ links to the real files."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
    accepted, _peer = server.accept()
    server.close()
    (tmp_path / "1" / "fd").mkdir(parents=True)
    (tmp_path / "1" / "net").mkdir()
    os.symlink("/proc/self/fd/%d" % client.fileno(), str(tmp_path / "1" / "fd" / "3"))
    for name in ("tcp", "tcp6"):
        os.symlink("/proc/self/net/" + name, str(tmp_path / "1" / "net" / name))
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(callerid, "open", spy, raising=False)
    try:
        conn = own_netinfo(1, proc=str(tmp_path))
        assert conn is not None and conn.af == socket.AF_INET
        assert conn.port_src == accepted.getsockname()[1] == client.getpeername()[1]
        assert conn.port_dst == client.getsockname()[1]
        assert opened == ["tcp"]
        # a socket that is in neither table (a Unix socket) costs both reads, then None
        os.unlink(str(tmp_path / "1" / "fd" / "3"))
        unix_a, unix_b = socket.socketpair()
        os.symlink("/proc/self/fd/%d" % unix_a.fileno(), str(tmp_path / "1" / "fd" / "3"))
        del opened[:]
        assert own_netinfo(1, proc=str(tmp_path)) is None
        assert opened == ["tcp", "tcp6"]
        unix_a.close()
        unix_b.close()
    finally:
        client.close()
        accepted.close()


def _connected_pair(family, host):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    client = socket.create_connection((host, server.getsockname()[1]))
    accepted, _peer = server.accept()
    server.close()
    return client, accepted


@pytest.mark.parametrize("scenario", ["v4", "v6", "v4-mapped", "unix-first", "listener-first"])
def test_own_socket_shortcut_agrees_with_the_proc_tables(scenario):
    """own_netinfo("self") asks its sockets directly; own_netinfo(<pid>)
    reads /proc/<pid>/net/tcp*: the same fds, the same answer (the first
    socket in fd order that is in a TCP table, a listener included)."""
    keep = []
    try:
        if scenario == "unix-first":
            keep += socket.socketpair()
        if scenario == "listener-first":
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            keep.append(listener)
        if scenario in ("v6", "v4-mapped"):
            if not socket.has_ipv6:
                pytest.skip("no IPv6")
        try:
            if scenario == "v6":
                keep += _connected_pair(socket.AF_INET6, "::1")
            elif scenario == "v4-mapped":
                server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                server.bind(("::", 0))
                server.listen(1)
                client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
                accepted, _peer = server.accept()
                server.close()
                keep += [client, accepted]
            else:
                keep += _connected_pair(socket.AF_INET, "127.0.0.1")
        except OSError as exc:
            pytest.skip("cannot set up %s: %s" % (scenario, exc))
        fast = own_netinfo("self")
        slow = own_netinfo(os.getpid())
        assert fast is not None and slow is not None
        assert vars(fast) == vars(slow)
        # the descriptors are untouched (own_netinfo works on dups)
        for sock in keep:
            assert sock.fileno() >= 0 and os.fstat(sock.fileno())
        if scenario != "listener-first" and len(keep) >= 2:
            keep[-2].sendall(b"ping")
            assert keep[-1].recv(4) == b"ping"
    finally:
        for sock in keep:
            sock.close()


def test_own_socket_shortcut_reads_no_proc_table():
    """In a fresh interpreter whose only socket is a connected TCP socket,
    own_netinfo("self") answers without opening /proc/self/net/tcp*."""
    code = r'''
import builtins, json, socket, sys
sys.path.insert(0, sys.argv[1])
from slurm_adopt import callerid
opened = []
real_open = builtins.open
def spy(path, *args, **kwargs):
    opened.append(str(path))
    return real_open(path, *args, **kwargs)
callerid.open = spy
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
client = socket.create_connection(server.getsockname()); accepted, _peer = server.accept()
server.close()
conn = callerid.own_netinfo("self")
print(json.dumps({"opened": opened, "port_src": conn.port_src, "port_dst": conn.port_dst,
                  "want": [accepted.getsockname()[1], client.getsockname()[1]]}))
'''
    import json
    import subprocess
    import sys
    here = os.path.dirname(os.path.dirname(callerid.__file__))
    p = subprocess.run([sys.executable, "-I", "-c", code, here], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.decode())
    assert [out["port_src"], out["port_dst"]] == out["want"]
    assert out["opened"] == []


def test_own_socket_shortcut_leaks_no_descriptor():
    client, accepted = _connected_pair(socket.AF_INET, "127.0.0.1")
    unix_a, unix_b = socket.socketpair()
    try:
        before = sorted(os.listdir("/proc/self/fd"))
        for _i in range(20):
            own_netinfo("self")
            for sock in (client, unix_a):
                callerid._own_socket_conn(sock.fileno())
        callerid._own_socket_conn(987654)            # not an fd: EBADF from dup
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        for sock in (client, accepted, unix_a, unix_b):
            sock.close()
