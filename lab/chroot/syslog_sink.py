#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Minimal syslog sink for the trixie lab chroot (standard library only).

Listens on an AF_UNIX datagram socket (default /dev/log, i.e. the chroot's own /dev/log,
which lives on the chroot's private /dev tmpfs) and appends every message to a file, one
line each:  ``<ISO time> <facility>.<severity> <message>``. Each write is flushed, so tests
can read PAM module log lines right after a login. SIGTERM/SIGINT unlink the socket and exit.
"""
import argparse
import datetime
import os
import signal
import socket
import sys

FACILITIES = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
              "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock"] + \
             ["local%d" % i for i in range(8)]
SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


def decode(data: bytes) -> str:
    text = data.decode("utf-8", "replace").rstrip("\n\x00")
    prio = None
    if text.startswith("<"):
        end = text.find(">")
        if 1 < end <= 4 and text[1:end].isdigit():
            prio = int(text[1:end])
            text = text[end + 1:]
    if prio is None:
        label = "unknown"
    else:
        fac, sev = prio >> 3, prio & 7
        label = "%s.%s" % (FACILITIES[fac] if fac < len(FACILITIES) else str(fac), SEVERITIES[sev])
    now = datetime.datetime.now().astimezone().isoformat(timespec="microseconds")
    return "%s %s %s\n" % (now, label, text.replace("\n", " "))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", default="/dev/log")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pidfile")
    args = ap.parse_args()

    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(args.socket)
    os.chmod(args.socket, 0o666)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def stop(_sig, _frm):
        try:
            os.unlink(args.socket)
        except OSError:
            pass
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.pidfile:
        with open(args.pidfile + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(args.pidfile + ".tmp", args.pidfile)

    out = open(args.out, "a", buffering=1)
    os.chmod(args.out, 0o644)
    out.write(decode(b"<46>lab-syslog-sink: listening on " + args.socket.encode()))
    while True:
        data = sock.recv(65536)
        out.write(decode(data))
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
