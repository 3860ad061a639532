# SPDX-License-Identifier: GPL-3.0-or-later
"""The adoption service's wire protocol (slurm_adopt.protocol): every limit and
every malformed form is rejected, and what the C client sends decodes."""

import os
import socket
import struct

import pytest

from slurm_adopt import protocol as proto


def field(tag, value):
    return struct.pack(">BH", tag, len(value)) + value


BUDGET = field(proto.F_BUDGET_MS, struct.pack(">I", 5000))


def test_request_round_trip_keeps_order_items_and_env():
    payload = proto.encode_request(
        ["action_no_jobs=ignore", "log_level=debug5", "Zürich"],
        {"user": "alice", "service": "sshd", "rhost": "10.0.0.1", "tty": "ssh", "ruser": ""},
        {"SLURM_CONF": "/etc/slurm/slurm.conf", "SLURMD_NODENAME": "n1"}, 20000, flags=0x8000)
    req = proto.decode_request(payload)
    assert req.args == ["action_no_jobs=ignore", "log_level=debug5", "Zürich"]
    assert req.items == {"user": "alice", "service": "sshd", "rhost": "10.0.0.1", "tty": "ssh",
                         "ruser": ""}
    assert req.env == {"SLURM_CONF": "/etc/slurm/slurm.conf", "SLURMD_NODENAME": "n1"}
    assert (req.budget_ms, req.flags) == (20000, 0x8000)


def test_unset_items_stay_absent():
    req = proto.decode_request(proto.encode_request([], {"user": "bob"}, None, 1))
    assert req.items == {"user": "bob"} and req.args == [] and req.env == {}


def test_non_utf8_bytes_survive_a_round_trip():
    raw = BUDGET + field(proto.F_USER, b"\xffuser")
    assert proto.decode_request(raw).items["user"].encode("utf-8", "surrogateescape") == b"\xffuser"


@pytest.mark.parametrize("payload, message", [
    (field(proto.F_USER, b"x"), "without a time budget"),
    (BUDGET + field(proto.F_USER, b"x" * (proto.MAX_FIELD + 1)), "limit 4096"),
    (BUDGET + b"".join(field(proto.F_ARG, b"a") for _i in range(proto.MAX_ARGS + 1)),
     "more than 64"),
    (BUDGET + field(proto.F_USER, b"a") + field(proto.F_USER, b"b"), "repeated"),
    (BUDGET + field(99, b"x"), "unknown field 99"),
    (BUDGET + field(proto.F_ENV, b"LD_PRELOAD=/tmp/x.so"), "not accepted"),
    (BUDGET + field(proto.F_ENV, b"SLURM_CONF"), "not accepted"),
    (BUDGET + field(proto.F_ENV, b"SLURM_CONF=/a") + field(proto.F_ENV, b"SLURM_CONF=/b"),
     "not accepted"),
    (BUDGET + field(proto.F_USER, b"ali\0ce"), "NUL"),
    (field(proto.F_BUDGET_MS, struct.pack(">I", proto.MAX_BUDGET_MS + 1)), "budget"),
    (field(proto.F_BUDGET_MS, b"\0\0\1"), "must be 4 bytes"),
    (BUDGET + b"\x02\x00", "truncated field header"),
    (BUDGET + struct.pack(">BH", proto.F_USER, 10) + b"abc", "past the end"),
])
def test_malformed_requests_are_rejected(payload, message):
    with pytest.raises(proto.ProtocolError, match=message):
        proto.decode_request(payload)


@pytest.mark.parametrize("packet, message", [
    (b"\x01\x10\x00", "shorter than the header"),
    (struct.pack(">BBHI", 2, 16, 0, 0), "protocol version 2"),
    (struct.pack(">BBHI", 1, 16, 1, 0), "unknown flags"),
    (struct.pack(">BBHI", 1, 16, 0, 5) + b"abc", "length field 5"),
    (struct.pack(">BBHI", 1, 6, 0, 4) + b"\0\0\0\0", "unexpected message type 6"),
    (struct.pack(">BBHI", 1, 16, 0, proto.MAX_PACKET - 7) + b"x" * (proto.MAX_PACKET - 7),
     "limit 65536"),
])
def test_malformed_packets_are_rejected(packet, message):
    with pytest.raises(proto.ProtocolError, match=message):
        proto.unpack(packet, proto.CLIENT_TYPES)


def test_service_messages_are_what_the_c_client_parses():
    assert proto.pack(proto.MSG_HEARTBEAT) == b"\x01\x01\x00\x00\x00\x00\x00\x00"
    assert proto.int_message(proto.MSG_RESULT, 25) == b"\x01\x06\x00\x00\x00\x00\x00\x04\x00\x00\x00\x19"
    assert proto.conv(proto.PAM_ERROR_MSG, "no") == b"\x01\x02\x00\x00\x00\x00\x00\x03\x03no"
    assert proto.putenv("SLURM_JOB_ID", "7") == b"\x01\x03\x00\x00\x00\x00\x00\x0eSLURM_JOB_ID=7"
    with pytest.raises(proto.ProtocolError):
        proto.putenv("X", "a" * proto.MAX_FIELD)
    assert len(proto.conv(proto.PAM_ERROR_MSG, "x" * 10000)) == 8 + 1 + proto.MAX_FIELD


def pair():
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def test_recv_packet_closes_descriptors_it_does_not_accept():
    a, b = pair()
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        a.sendmsg([proto.pack(proto.MSG_GO)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                               struct.pack("=i", devnull))])
        before = set(os.listdir("/proc/self/fd"))
        with pytest.raises(proto.ProtocolError, match="descriptors"):
            proto.recv_packet(b, proto.CLIENT_TYPES, max_fds=0)
        assert set(os.listdir("/proc/self/fd")) <= before
    finally:
        os.close(devnull)
        a.close()
        b.close()


def test_recv_packet_oversized_is_truncated_and_rejected():
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        a.send(b"\x01\x10\x00\x00" + struct.pack(">I", 200000) + b"x" * 200000)
        with pytest.raises(proto.ProtocolError, match="truncated"):
            proto.recv_packet(b, proto.CLIENT_TYPES)
    finally:
        a.close()
        b.close()


def test_recv_packet_eof():
    a, b = pair()
    a.close()
    with pytest.raises(EOFError):
        proto.recv_packet(b, proto.CLIENT_TYPES)
    b.close()
