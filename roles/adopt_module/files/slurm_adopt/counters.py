# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Login counters for the drift check's metrics.

After each login decision one byte is appended to the file of its outcome
in COUNTER_DIR (adopted, allowed, ignored, denied) and, when the module
logged an error, to ``errors``: a file's size is its count. O_APPEND makes
concurrent logins safe without locks.

Only files that already exist are written: the drift check creates them
when its metrics are on (missing: counting is off, one failed open(2)).
This never creates a file, never follows a symlink, never writes to
anything but a root-owned regular file with a single name (no hard link to
another file), never blocks, stops at MAX_SIZE bytes, and never raises: a
login never depends on it.
"""

import os
import stat

COUNTER_DIR = "/run/slurm-adopt/counters"
MAX_SIZE = 1 << 20
_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
          | getattr(os, "O_CLOEXEC", 0))


def outcome(rc, adopted, success, ignore):
    """adopted | allowed | ignored | denied."""
    if adopted:
        return "adopted"
    if rc == success:
        return "allowed"
    if rc == ignore:
        return "ignored"
    return "denied"


def bump(name, directory):
    """Append one byte to directory/name if it is a root-owned regular file
    below MAX_SIZE; True when counted."""
    try:
        fd = os.open(os.path.join(directory, name), _FLAGS)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_nlink != 1
                or st.st_size >= MAX_SIZE):
            return False
        return os.write(fd, b".") == 1
    except OSError:
        return False
    finally:
        os.close(fd)


def count(rc, adopted, had_error, success, ignore, directory=None):
    """Count one login decision; never raises."""
    try:
        directory = directory or COUNTER_DIR
        bump(outcome(rc, adopted, success, ignore), directory)
        if had_error:
            bump("errors", directory)
    except Exception:      # pylint: disable=broad-except
        pass
