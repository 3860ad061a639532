# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The wire protocol between the C PAM client and the adoption service (or
its fallback child), described in docs/service.md.

One message is one packet of an AF_UNIX SOCK_SEQPACKET connection: the kernel
delivers it whole or not at all, so a peer cannot dribble a message byte by
byte. Every packet starts with an 8-byte header, big-endian::

    u8 version   u8 type   u16 flags (0)   u32 payload length (= packet size - 8)

followed by the payload. A packet longer than MAX_PACKET, a length that does
not match the packet, a version other than VERSION, non-zero flags, an
unknown type or a field over its limit is malformed: the receiver drops the
connection (and the C client applies its fallback)."""

import struct

from .sockets import socket

VERSION = 1
HEADER = struct.Struct(">BBHI")
MAX_PACKET = 65536              # whole packet, header included
MAX_FIELD = 4096                # one field of a request, one text of a reply
MAX_ARGS = 64                   # module options in a request
MAX_FDS = 1                     # descriptors in one packet (MSG_SETNS only)

# client -> service
MSG_REQUEST = 16
MSG_GO = 17                     # answer to MSG_PREPARE: the client waits for the result
MSG_SETNS_RESULT = 18           # i32 errno of setns() (0: joined)
MSG_LOGGED = 19                 # answer to MSG_SYSLOG: the line is written (keeps the order)
# service -> client
MSG_HEARTBEAT = 1               # "still working" (sent at accept, then every HEARTBEAT_INTERVAL)
MSG_CONV = 2                    # u8 PAM message style + text: pam_prompt(style, text)
MSG_PUTENV = 3                  # "NAME=VALUE": pam_putenv
MSG_PREPARE = 4                 # about to adopt the client's process: the client must answer MSG_GO
MSG_SETNS = 5                   # i32 namespace type + one fd (SCM_RIGHTS): setns(fd, type)
MSG_RESULT = 6                  # i32 PAM return code; the last message
MSG_REFUSED = 7                 # text: the request was not handled (the client falls back)
# u8 severity (0-7) + text: syslog(LOG_AUTHPRIV | severity) in the client's
# process (pam_syslog's lines: sshd's ident and pid); the client answers MSG_LOGGED
MSG_SYSLOG = 8

CLIENT_TYPES = (MSG_REQUEST, MSG_GO, MSG_SETNS_RESULT, MSG_LOGGED)
SERVICE_TYPES = (MSG_HEARTBEAT, MSG_CONV, MSG_PUTENV, MSG_PREPARE, MSG_SETNS, MSG_RESULT,
                 MSG_REFUSED, MSG_SYSLOG)

# Fields of MSG_REQUEST: u8 tag, u16 length, value; in any order.
F_ARG = 1                       # one module option (repeated, in argv order)
F_USER = 2                      # PAM_USER
F_SERVICE = 3                   # PAM_SERVICE
F_RHOST = 4                     # PAM_RHOST
F_TTY = 5                       # PAM_TTY
F_RUSER = 6                     # PAM_RUSER
F_ENV = 7                       # "NAME=VALUE" from the client process's environment (repeated)
F_BUDGET_MS = 8                 # u32: milliseconds the service may take from reading the request
F_FLAGS = 9                     # u32: the flags argument of pam_sm_acct_mgmt
FIELD = struct.Struct(">BH")
ITEM_TAGS = {F_USER: "user", F_SERVICE: "service", F_RHOST: "rhost", F_TTY: "tty",
             F_RUSER: "ruser"}
# The only environment variables of sshd that the module reads (slurm.conf's
# location and the node name), as libslurm reads them in the C module.
ENV_NAMES = ("SLURM_CONF", "SLURMD_NODENAME")
MAX_BUDGET_MS = 120000

PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")


class ProtocolError(Exception):
    """A malformed, oversized or unexpected message."""


def _text(raw):
    if b"\0" in raw:
        raise ProtocolError("NUL byte in a text field")
    return raw.decode("utf-8", "surrogateescape")


class Request(object):
    """A decoded MSG_REQUEST."""

    def __init__(self):
        self.args = []
        self.items = {}         # "user", "service", ... -> text (absent: item not set)
        self.env = {}
        self.budget_ms = None
        self.flags = 0


def encode_request(args, items=None, env=None, budget_ms=None, flags=0):
    """The payload of a MSG_REQUEST (what the C client builds)."""
    out = []

    def field(tag, value):
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        out.append(FIELD.pack(tag, len(value)) + value)

    if budget_ms is not None:
        field(F_BUDGET_MS, _U32.pack(budget_ms))
    field(F_FLAGS, _U32.pack(flags))
    for arg in args:
        field(F_ARG, arg)
    for tag, name in sorted(ITEM_TAGS.items()):
        if (items or {}).get(name) is not None:
            field(tag, items[name])
    for name, value in sorted((env or {}).items()):
        field(F_ENV, "%s=%s" % (name, value))
    return b"".join(out)


def decode_request(payload):
    """Request from a MSG_REQUEST payload; ProtocolError when malformed."""
    req = Request()
    pos, size = 0, len(payload)
    seen = set()
    while pos < size:
        if pos + FIELD.size > size:
            raise ProtocolError("truncated field header at offset %d" % pos)
        tag, length = FIELD.unpack_from(payload, pos)
        pos += FIELD.size
        if length > MAX_FIELD:
            raise ProtocolError("field %d of %d bytes (limit %d)" % (tag, length, MAX_FIELD))
        if pos + length > size:
            raise ProtocolError("field %d runs past the end of the request" % tag)
        value = payload[pos:pos + length]
        pos += length
        if tag in seen and tag not in (F_ARG, F_ENV):
            raise ProtocolError("field %d repeated" % tag)
        seen.add(tag)
        if tag == F_ARG:
            if len(req.args) >= MAX_ARGS:
                raise ProtocolError("more than %d module options" % MAX_ARGS)
            req.args.append(_text(value))
        elif tag in ITEM_TAGS:
            req.items[ITEM_TAGS[tag]] = _text(value)
        elif tag == F_ENV:
            name, sep, text = _text(value).partition("=")
            if not sep or name not in ENV_NAMES or name in req.env:
                raise ProtocolError("environment field %r not accepted" % name)
            req.env[name] = text
        elif tag in (F_BUDGET_MS, F_FLAGS):
            if length != 4:
                raise ProtocolError("field %d must be 4 bytes, not %d" % (tag, length))
            number = _U32.unpack(value)[0]
            if tag == F_FLAGS:
                req.flags = number
            elif number > MAX_BUDGET_MS:
                raise ProtocolError("budget of %d ms (limit %d)" % (number, MAX_BUDGET_MS))
            else:
                req.budget_ms = number
        else:
            raise ProtocolError("unknown field %d" % tag)
    if req.budget_ms is None:
        raise ProtocolError("request without a time budget")
    return req


def pack(msg_type, payload=b""):
    if len(payload) + HEADER.size > MAX_PACKET:
        raise ProtocolError("message of %d bytes (limit %d)" % (len(payload), MAX_PACKET))
    return HEADER.pack(VERSION, msg_type, 0, len(payload)) + payload


def unpack(packet, allowed):
    """(type, payload) of a whole packet; ProtocolError when malformed."""
    if len(packet) < HEADER.size:
        raise ProtocolError("packet of %d bytes (shorter than the header)" % len(packet))
    if len(packet) > MAX_PACKET:
        raise ProtocolError("packet of %d bytes (limit %d)" % (len(packet), MAX_PACKET))
    version, msg_type, flags, length = HEADER.unpack_from(packet)
    if version != VERSION:
        raise ProtocolError("protocol version %d (this side speaks %d)" % (version, VERSION))
    if flags:
        raise ProtocolError("unknown flags 0x%x" % flags)
    if length != len(packet) - HEADER.size:
        raise ProtocolError("length field %d, payload %d bytes"
                            % (length, len(packet) - HEADER.size))
    if msg_type not in allowed:
        raise ProtocolError("unexpected message type %d" % msg_type)
    return msg_type, packet[HEADER.size:]


def conv(style, text):
    raw = text.encode("utf-8", "replace")[:MAX_FIELD]
    return pack(MSG_CONV, struct.pack(">B", style) + raw)


def syslog(severity, text):
    raw = text.encode("utf-8", "replace").replace(b"\0", b"?")[:MAX_FIELD]
    return pack(MSG_SYSLOG, struct.pack(">B", severity & 7) + raw)


def putenv(name, value):
    raw = ("%s=%s" % (name, value)).encode("utf-8", "replace")
    if len(raw) > MAX_FIELD or b"\0" in raw:
        raise ProtocolError("environment variable %s too long or with a NUL byte" % name)
    return pack(MSG_PUTENV, raw)


def int_message(msg_type, value):
    return pack(msg_type, _I32.pack(value))


def read_int(payload):
    if len(payload) != 4:
        raise ProtocolError("integer payload of %d bytes" % len(payload))
    return _I32.unpack(payload)[0]


def refused(reason):
    return pack(MSG_REFUSED, reason.encode("utf-8", "replace")[:MAX_FIELD])


def recv_packet(sock, allowed, max_fds=0):
    """One packet from a SOCK_SEQPACKET socket whose timeout is already set:
    (type, payload, fds). Received descriptors are close-on-exec; they are
    closed again when the packet is malformed or carries more than max_fds.
    An empty read (the peer closed) raises EOFError."""
    import os
    space = socket.CMSG_SPACE(4 * max(max_fds, 1) + 4 * 4)
    data, ancdata, flags, _addr = sock.recvmsg(MAX_PACKET + 1, space, socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, blob in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(blob) - len(blob) % 4
            fds.extend(struct.unpack("=%di" % (usable // 4), blob[:usable]))
    try:
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError("packet or its descriptors truncated (over the limits)")
        if len(fds) > max_fds:
            raise ProtocolError("%d descriptors in one packet (limit %d)" % (len(fds), max_fds))
        if not data:
            raise EOFError("peer closed the connection")
        msg_type, payload = unpack(data, allowed)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return msg_type, payload, fds
