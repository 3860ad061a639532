#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Probe a slurmstepd Unix socket (standard library only) and print what it answers.

Usage: stepd_probe.py SOCKET [--version 0x2A00] [--pid PID]

Does the handshake (native int protocol version -> native int reply) and then, on the same
connection, REQUEST_STATE (5), REQUEST_STEP_UID (20), REQUEST_DAEMON_PID (9),
REQUEST_STEP_LIST_PIDS (15) and optionally REQUEST_PID_IN_CONTAINER (8). Prints JSON.
With --handshake-only it only reports the reply to each --version given (repeatable), one
connection per version. Must run as root (or the job owner) on the node.
"""
import argparse
import json
import socket
import struct
import sys

INT = struct.Struct("=i")
U32 = struct.Struct("=I")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def handshake(path, version, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(INT.pack(version))
    try:
        reply = INT.unpack(recv_exact(s, 4))[0]
    except EOFError:
        reply = None
    return s, reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--version", action="append", type=lambda v: int(v, 0))
    ap.add_argument("--pid", type=int)
    ap.add_argument("--handshake-only", action="store_true")
    args = ap.parse_args()
    versions = args.version or [0x2A00]

    if args.handshake_only:
        out = {}
        for v in versions:
            s, reply = handshake(args.socket, v)
            s.close()
            out[hex(v)] = None if reply is None else (hex(reply) if reply >= 0 else reply)
        print(json.dumps(out))
        return 0

    s, reply = handshake(args.socket, versions[0])
    out = {"sent": hex(versions[0]), "reply": reply, "reply_hex": hex(reply) if reply is not None else None}
    if reply is None or reply < 0:
        print(json.dumps(out))
        return 1
    s.sendall(INT.pack(5))
    out["state"] = INT.unpack(recv_exact(s, 4))[0]
    s.sendall(INT.pack(20))
    out["uid"] = U32.unpack(recv_exact(s, 4))[0]
    s.sendall(INT.pack(9))
    out["daemon_pid"] = INT.unpack(recv_exact(s, 4))[0]
    s.sendall(INT.pack(15))
    n = U32.unpack(recv_exact(s, 4))[0]
    out["pids"] = [U32.unpack(recv_exact(s, 4))[0] for _i in range(n)]
    if args.pid is not None:
        s.sendall(INT.pack(8) + INT.pack(args.pid))
        out["pid_in_container"] = bool(recv_exact(s, 1)[0])
    s.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
