#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Remove stale slurmstepd sockets of one node (standard library only).

Usage: prune_stale_sockets.py SPOOL_DIR NODENAME [--dry-run]

A socket ``<NODENAME>_<job>.<step>[.<het>]`` whose connect() is refused has no stepd
behind it. Slurm 24.11.5's extern stepd sometimes crashes (SIGSEGV) when the job is
cancelled within about a second of an adopted process exiting, and then leaves its socket
behind; so do stepds killed by a hard stop. Live stepds always accept, so only refused
sockets are removed. Prints one line per removed socket.
"""
import argparse
import os
import re
import socket
import stat
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("spool_dir")
    ap.add_argument("nodename")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()

    rx = re.compile(r"^%s_([0-9]+)\.([0-9]+)(\.[0-9]+)?$" % re.escape(args.nodename))
    try:
        names = sorted(os.listdir(args.spool_dir))
    except FileNotFoundError:
        return 0
    for name in names:
        if not rx.match(name):
            continue
        path = os.path.join(args.spool_dir, name)
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                continue
        except FileNotFoundError:
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(path)
        except ConnectionRefusedError:
            print("stale: %s" % path)
            if not args.dry_run:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        except OSError:
            pass  # timeout or other error: leave it alone
        finally:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
