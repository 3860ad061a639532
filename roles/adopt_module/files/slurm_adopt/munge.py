# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A munge credential from munged, over its Unix socket, without libmunge.

libmunge's munge_encode() is a small client of munged's own message
protocol: one request and one response on a fresh connection to the local
socket; munged learns the caller's uid and gid from the socket itself
(SO_PEERCRED on Linux). Loading libmunge through ctypes, and bounding the
blocking call with a thread, costs more than the whole exchange, so this
module speaks the protocol directly, with socket timeouts.

The protocol (message format version 4, unchanged from munge 0.5.10 to
0.5.18; every integer in network byte order):

    header       magic u32 (0x00606D4B), version u8 (4), type u8,
                 retry u8, body length u32                      11 bytes
    encode req   type 2: cipher u8, mac u8, zip u8, realm length u8,
                 realm, ttl u32, decode uid u32, decode gid u32,
                 payload length u32, payload
    encode rsp   type 3: error number u8, error length u8, error text
                 (NUL-terminated), credential length u32, credential
    decode req   type 4: credential length u32, credential
    decode rsp   type 5: error number u8, error length u8, error text,
                 cipher u8, mac u8, zip u8, realm length u8, realm, ttl u32,
                 address length u8, address, encode time u32, decode time
                 u32, uid u32, gid u32, decode uid u32, decode gid u32,
                 payload length u32, payload

Like libmunge with a NULL context, the request asks for munged's default
cipher, MAC, compression and time-to-live, and lets any uid and gid decode
the credential.
"""

import os
import struct
import time

from .constants import MungeError
from .sockets import socket

DEFAULT_SOCKET = "/run/munge/munge.socket.2"

MSG_MAGIC = 0x00606D4B
MSG_VERSION = 4
MSG_ENC_REQ = 2
MSG_ENC_RSP = 3
MSG_DEC_REQ = 4
MSG_DEC_RSP = 5
EMUNGE_CRED_REPLAYED = 17
HEADER = struct.Struct(">IBBBI")        # magic, version, type, retry, body length

CIPHER_DEFAULT = 1
MAC_DEFAULT = 1
ZIP_DEFAULT = 1
TTL_DEFAULT = 0
UID_ANY = 0xFFFFFFFF
GID_ANY = 0xFFFFFFFF

MAX_MESSAGE = 1048576                   # munged's own limit on a request
ATTEMPTS = 5                            # as libmunge: transient socket errors are retried
RETRY_PAUSE = 0.01                      # 10 ms, 20 ms, ... between attempts

# munge_err_t names for the log (munge.h).
ERRORS = {
    1: "internal error", 2: "invalid argument", 3: "exceeded maximum message length",
    4: "buffer overflow", 5: "out of memory", 6: "socket communication error",
    7: "socket timeout", 8: "invalid credential format", 9: "invalid credential version",
    10: "invalid cipher type", 11: "invalid MAC type", 12: "invalid compression type",
    13: "unrecognized security realm", 14: "invalid credential", 15: "expired credential",
    16: "rewound credential", 17: "replayed credential", 18: "unauthorized credential decode",
}


class _Transient(Exception):
    """A socket error worth another attempt (munged busy, connection dropped)."""


def pack_encode_request(payload, retry=0):
    """Header and body of an encode request for payload (bytes)."""
    body = (struct.pack(">BBBB", CIPHER_DEFAULT, MAC_DEFAULT, ZIP_DEFAULT, 0)
            + struct.pack(">IIII", TTL_DEFAULT, UID_ANY, GID_ANY, len(payload)) + payload)
    return HEADER.pack(MSG_MAGIC, MSG_VERSION, MSG_ENC_REQ, retry, len(body)) + body


def pack_decode_request(cred, retry=0):
    """Header and body of a decode request for a credential (bytes)."""
    body = struct.pack(">I", len(cred) + 1) + cred + b"\0"
    return HEADER.pack(MSG_MAGIC, MSG_VERSION, MSG_DEC_REQ, retry, len(body)) + body


class Decoded(object):
    """What munged says about a credential it decoded."""

    def __init__(self, error, uid, gid, payload):
        self.error = error          # munge error number, 0 = valid
        self.uid = uid
        self.gid = gid
        self.payload = payload


def unpack_decode_response(body):
    """A Decoded from a decode response body. Errors that still describe
    the credential (expired, rewound, replayed) come back with their error
    number; a response without a credential raises MungeError."""
    try:
        error_num, error_len = struct.unpack_from(">BB", body, 0)
        pos = 2
        error_text = body[pos:pos + error_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        pos += error_len
        if error_num and len(body) == pos:
            raise MungeError("munged refused to decode: %s"
                             % (error_text or ERRORS.get(error_num, "error %d" % error_num)))
        _cipher, _mac, _zip, realm_len = struct.unpack_from(">BBBB", body, pos)
        pos += 4 + realm_len + 4                        # realm, ttl
        (addr_len,) = struct.unpack_from(">B", body, pos)
        pos += 1 + addr_len + 8                         # address, encode and decode time
        uid, gid, _auth_uid, _auth_gid, data_len = struct.unpack_from(">IIIII", body, pos)
        pos += 20
    except struct.error:
        raise MungeError("truncated decode response from munged")
    payload = body[pos:pos + data_len]
    if len(payload) != data_len:
        raise MungeError("truncated decode response from munged")
    return Decoded(error_num, uid, gid, payload)


def unpack_header(data):
    """(type, body length) of an 11-byte message header; MungeError if invalid."""
    magic, version, msg_type, _retry, length = HEADER.unpack(data)
    if magic != MSG_MAGIC:
        raise MungeError("munged answered with an invalid message (magic 0x%08x)" % magic)
    if version != MSG_VERSION:
        raise MungeError("munged speaks message version %d, not %d" % (version, MSG_VERSION))
    return msg_type, length


def unpack_encode_response(body):
    """The credential (bytes, without a trailing NUL) from an encode
    response body; MungeError with munged's message if it refused."""
    if len(body) < 2:
        raise MungeError("truncated response from munged")
    error_num, error_len = struct.unpack(">BB", body[:2])
    pos = 2 + error_len
    error_text = body[2:pos].split(b"\0", 1)[0].decode("utf-8", "replace")
    if error_num:
        raise MungeError("munged refused to encode: %s"
                         % (error_text or ERRORS.get(error_num, "error %d" % error_num)))
    if len(body) < pos + 4:
        raise MungeError("truncated response from munged")
    (cred_len,) = struct.unpack(">I", body[pos:pos + 4])
    cred = body[pos + 4:pos + 4 + cred_len]
    if len(cred) != cred_len:
        raise MungeError("truncated response from munged")
    cred = cred.rstrip(b"\0")
    if not cred.startswith(b"MUNGE:"):
        raise MungeError("munged returned no credential")
    return cred


def _recv_exactly(sock, size, deadline):
    chunks, got = [], 0
    while got < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - got)
        if not chunk:
            raise _Transient("munged closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _exchange(path, request, want_type, retry, deadline):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
        except (OSError, socket.error) as exc:
            code = getattr(exc, "errno", None)
            if code in (11, 111):       # EAGAIN (backlog full), ECONNREFUSED
                raise _Transient("munged is not accepting connections at %s: %s" % (path, exc))
            raise MungeError("munged is not reachable at %s: %s" % (path, exc))
        try:
            sock.sendall(request(retry))
            msg_type, length = unpack_header(_recv_exactly(sock, HEADER.size, deadline))
            if msg_type != want_type:
                raise MungeError("munged answered with message type %d, not %d"
                                 % (msg_type, want_type))
            if length > MAX_MESSAGE:
                raise MungeError("implausible response length %d from munged" % length)
            body = _recv_exactly(sock, length, deadline)
        except socket.timeout:
            raise
        except (OSError, socket.error) as exc:
            raise _Transient("talking to munged at %s: %s" % (path, exc))
        return body
    finally:
        sock.close()


def encode(payload, socket_path=None, timeout=3.0):
    """A munge credential (bytes, "MUNGE:...:") over payload, from the munged
    at socket_path (default /run/munge/munge.socket.2), within timeout
    seconds. Raises MungeError for every failure."""
    body = _call(lambda retry: pack_encode_request(payload, retry), MSG_ENC_RSP,
                 socket_path, timeout)
    return unpack_encode_response(body)


def decode(cred, socket_path=None, timeout=3.0):
    """munge_decode(): a Decoded for cred (bytes), from the local munged,
    within timeout seconds. Raises MungeError when munged cannot be asked."""
    body = _call(lambda retry: pack_decode_request(cred, retry), MSG_DEC_RSP,
                 socket_path, timeout)
    return unpack_decode_response(body)


def _call(request, want_type, socket_path, timeout):
    path = socket_path or DEFAULT_SOCKET
    deadline = time.monotonic() + timeout
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise MungeError("munged is not reachable at %s: %s" % (path, exc.strerror or exc))
    if (mode & 0o170000) != 0o140000:
        raise MungeError("munged is not reachable at %s: not a socket" % path)
    last, attempt = None, 0
    while attempt < ATTEMPTS:
        if attempt:
            pause = RETRY_PAUSE * attempt
            if deadline - time.monotonic() <= pause:
                break
            time.sleep(pause)
        try:
            return _exchange(path, request, want_type, attempt, deadline)
        except socket.timeout:
            raise MungeError("munged at %s did not answer within %.1fs" % (path, timeout))
        except _Transient as exc:
            last = exc
        attempt += 1
    raise MungeError("%s (gave up after %d attempt(s))" % (last, attempt))
