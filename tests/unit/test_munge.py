# SPDX-License-Identifier: GPL-3.0-or-later
"""The munge client (slurm_adopt.munge): munged's message protocol, against a
fake munged on a Unix socket and against the real munged of this machine."""

import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from slurm_adopt import callerid, munge
from slurm_adopt import constants as C

PAYLOAD = struct.pack(">BH", C.HASH_PLUGIN_NONE, C.REQUEST_NETWORK_CALLERID)
REAL_SOCKET = "/run/munge/munge.socket.2"


def header(msg_type, length, magic=0x00606D4B, version=4, retry=0):
    return struct.pack(">IBBBI", magic, version, msg_type, retry, length)


def enc_response(cred=b"MUNGE:fakecred:", error=0, text=b""):
    err = text + b"\0" if text else b""
    body = struct.pack(">BB", error, len(err)) + err + struct.pack(">I", len(cred)) + cred
    return header(3, len(body)) + body


class FakeMunged(object):
    """A Unix socket server; each connection is handled by one function of
    the list `behaviours` in turn (the last one repeats)."""

    def __init__(self, path, behaviours):
        self.path = path
        self.behaviours = list(behaviours)
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(5)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def read_request(self, conn):
        conn.settimeout(5)
        head = b""
        while len(head) < 11:
            chunk = conn.recv(11 - len(head))
            if not chunk:
                return None
            head += chunk
        length = struct.unpack(">I", head[7:])[0]
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
        self.requests.append((head, body))
        return head, body

    def serve(self):
        n = 0
        while True:
            try:
                conn, _peer = self.sock.accept()
            except OSError:
                return
            behave = self.behaviours[min(n, len(self.behaviours) - 1)]
            n += 1
            try:
                behave(self, conn)
            finally:
                conn.close()

    def close(self):
        self.sock.close()


def answer(reply):
    def behave(server, conn):
        server.read_request(conn)
        conn.sendall(reply)
    return behave


def hang_up(server, conn):
    server.read_request(conn)


def silent(server, conn):
    server.read_request(conn)
    time.sleep(2)


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "munge.socket.2")


def test_request_bytes(sock_path):
    server = FakeMunged(sock_path, [answer(enc_response())])
    try:
        cred = munge.encode(PAYLOAD, sock_path, 2)
    finally:
        server.close()
    assert cred == b"MUNGE:fakecred:"
    head, body = server.requests[0]
    # magic "MUNGE", message version 4, type 2 (encode request), first attempt, body length
    assert head == bytes.fromhex("00606D4B") + bytes([4, 2, 0]) + struct.pack(">I", len(body))
    # default cipher/mac/zip (1), no realm, default ttl (0), any uid/gid may decode, payload
    assert body == (bytes([1, 1, 1, 0]) + struct.pack(">I", 0) + b"\xff" * 8
                    + struct.pack(">I", 3) + PAYLOAD)


def test_trailing_nul_of_the_credential_is_dropped(sock_path):
    server = FakeMunged(sock_path, [answer(enc_response(cred=b"MUNGE:abc:\0"))])
    try:
        assert munge.encode(b"x", sock_path, 2) == b"MUNGE:abc:"
    finally:
        server.close()


def test_munged_error_is_reported_with_its_text(sock_path):
    refusal = enc_response(cred=b"", error=13, text=b"Unrecognized realm")
    server = FakeMunged(sock_path, [answer(refusal)])
    try:
        with pytest.raises(C.MungeError) as err:
            munge.encode(b"x", sock_path, 2)
    finally:
        server.close()
    assert "munged refused to encode: Unrecognized realm" in str(err.value)
    assert len(server.requests) == 1            # a refusal is not retried


@pytest.mark.parametrize("reply, text", [
    (header(3, 0, magic=0x12345678), "invalid message"),
    (header(3, 0, version=3), "message version 3"),
    (header(5, 0), "message type 5"),
    (header(3, 1 << 21), "implausible response length"),
    (header(3, 6) + b"\0" * 6, "munged returned no credential"),
    (header(3, 4) + b"\0" * 4, "truncated response"),
    (header(3, 10) + b"\0\0" + struct.pack(">I", 9) + b"MUNG", "truncated response"),
])
def test_invalid_responses(sock_path, reply, text):
    server = FakeMunged(sock_path, [answer(reply)])
    try:
        with pytest.raises(C.MungeError) as err:
            munge.encode(b"x", sock_path, 2)
    finally:
        server.close()
    assert text in str(err.value)


def test_dropped_connection_is_retried_with_the_retry_count(sock_path):
    server = FakeMunged(sock_path, [hang_up, hang_up, answer(enc_response())])
    try:
        assert munge.encode(b"x", sock_path, 2) == b"MUNGE:fakecred:"
    finally:
        server.close()
    assert [head[6] for head, _body in server.requests] == [0, 1, 2]


def test_munged_that_always_drops_gives_up(sock_path):
    server = FakeMunged(sock_path, [hang_up])
    try:
        with pytest.raises(C.MungeError) as err:
            munge.encode(b"x", sock_path, 2)
    finally:
        server.close()
    assert "closed the connection" in str(err.value)
    assert len(server.requests) == munge.ATTEMPTS


def test_silent_munged_is_bounded(sock_path):
    server = FakeMunged(sock_path, [silent])
    t0 = time.monotonic()
    try:
        with pytest.raises(C.MungeError) as err:
            munge.encode(b"x", sock_path, 0.3)
    finally:
        server.close()
    assert time.monotonic() - t0 < 1.0
    assert "did not answer within 0.3s" in str(err.value)


def test_missing_socket_and_not_a_socket(tmp_path):
    with pytest.raises(C.MungeError) as err:
        munge.encode(b"x", str(tmp_path / "nothing"), 1)
    assert "munged is not reachable" in str(err.value)
    regular = tmp_path / "file"
    regular.write_bytes(b"")
    with pytest.raises(C.MungeError) as err:
        munge.encode(b"x", str(regular), 1)
    assert "not a socket" in str(err.value)


def test_socket_without_munged_behind_it(sock_path):
    """A stale socket file (munged died): refused, retried, bounded, MungeError."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()                                # the file stays, nobody listens
    t0 = time.monotonic()
    with pytest.raises(C.MungeError) as err:
        munge.encode(b"x", sock_path, 1)
    assert time.monotonic() - t0 < 1.0
    assert "not accepting connections" in str(err.value)


def test_callerid_uses_the_native_client(sock_path):
    server = FakeMunged(sock_path, [answer(enc_response())])
    try:
        assert callerid.munge_encode(PAYLOAD, sock_path, 2) == b"MUNGE:fakecred:"
    finally:
        server.close()
    assert server.requests[0][1].endswith(PAYLOAD)


# --------------------------------------------------------------------------- the real munged

def _real_munged():
    if not (os.path.exists(REAL_SOCKET) and shutil.which("unmunge")):
        if os.environ.get("ADOPT_LAB_REQUIRED"):
            pytest.fail("no munged at %s or no unmunge (ADOPT_LAB_REQUIRED is set)" % REAL_SOCKET)
        pytest.skip("no munged on this machine")


def unmunge(cred):
    p = subprocess.run(["unmunge"], input=cred, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, check=False)
    assert p.returncode == 0, p.stderr
    meta, _sep, payload = p.stdout.partition(b"\n\n")
    fields = {}
    for line in meta.decode().splitlines():
        key, _sep, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields, payload


def test_real_munged_credential_decodes_with_unmunge():
    _real_munged()
    cred = munge.encode(PAYLOAD, None, 3)
    fields, payload = unmunge(cred)
    assert payload == PAYLOAD
    assert fields["STATUS"] == "Success (0)"
    assert fields["UID"].endswith("(%d)" % os.getuid())


def test_real_munged_same_metadata_as_the_munge_command():
    """cipher, MAC, compression and ttl are munged's defaults, as with `munge`
    (libmunge with no options), which is what Slurm's auth/munge asks for."""
    _real_munged()
    ours, _payload = unmunge(munge.encode(b"abc", REAL_SOCKET, 3))
    p = subprocess.run(["munge", "-s", "abc"], stdout=subprocess.PIPE, timeout=10, check=True)
    theirs, _payload = unmunge(p.stdout)
    for key in ("CIPHER", "MAC", "ZIP", "TTL", "UID", "GID"):
        assert ours[key] == theirs[key], key


def test_real_munged_sees_the_calling_user():
    """munged takes the uid from the socket (SO_PEERCRED): a credential made
    by another user's process carries that user's uid."""
    _real_munged()
    if os.getuid() != 0:
        pytest.skip("needs root to run as another user")
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    here = os.path.dirname(os.path.dirname(munge.__file__))
    code = ("import sys; sys.path.insert(0, %r); from slurm_adopt import munge; "
            "sys.stdout.buffer.write(munge.encode(b'who', None, 3))" % here)
    p = subprocess.run(["/usr/bin/python3", "-I", "-B", "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20, check=False,
                       preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)))
    assert p.returncode == 0, p.stderr
    fields, payload = unmunge(p.stdout)
    assert payload == b"who"
    assert fields["UID"].endswith("(%d)" % nobody.pw_uid)
