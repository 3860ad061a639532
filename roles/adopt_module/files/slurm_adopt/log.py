# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Slurm-style logging to syslog (LOG_AUTHPRIV, ident pam_slurm_adopt)."""

import os
import time

from .sockets import socket
from .constants import (LOG_AUTHPRIV, LOG_LEVEL_DEBUG, LOG_LEVEL_DEBUG2, LOG_LEVEL_DEBUG3,
                        LOG_LEVEL_ERROR, LOG_LEVEL_INFO, LOG_LEVEL_QUIET, LOG_LEVEL_VERBOSE,
                        LOG_PREFIX, MODULE_NAME, SYSLOG_PRIORITY, SYSLOG_TIMEOUT)


class Log(object):
    """Slurm-like leveled logging.

    Lines go to syslog through /dev/log directly, so the module never calls
    openlog(3) and never changes the ident of the sshd process that loads it.
    The lines the C module writes with pam_syslog(3) go through syslog(3) of
    the process instead, so they carry the process's own ident, as there.
    Every line is also kept in ``lines`` (for the explain command).

    Each write waits at most SYSLOG_TIMEOUT and never past the module's
    deadline (``deadline``, set by the flow); after a write that timed out,
    syslog is given up for the rest of the login.
    """

    dev_log = "/dev/log"

    def __init__(self, level=LOG_LEVEL_INFO, ident=MODULE_NAME, to_syslog=True,
                 echo=None, process_syslog=None):
        self.level = level
        self.ident = ident
        self.to_syslog = to_syslog
        self.echo = echo
        self.lines = []
        self.deadline = None
        self._sock = None
        self._broken = False
        self._process_syslog = process_syslog

    def log(self, level, msg):
        self.lines.append((level, msg))
        if self.echo is not None:
            self.echo(level, msg)
        if not self.to_syslog or level > self.level or level == LOG_LEVEL_QUIET:
            return
        self._send(SYSLOG_PRIORITY.get(level, 7), LOG_PREFIX.get(level, "") + msg)

    def pam_syslog(self, priority, msg, service="?"):
        """Lines that the C module writes with pam_syslog(3), before (or
        independent of) its own log level."""
        self.lines.append((LOG_LEVEL_ERROR if priority <= 3 else LOG_LEVEL_INFO, msg))
        if self.echo is not None:
            self.echo(LOG_LEVEL_ERROR if priority <= 3 else LOG_LEVEL_INFO, msg)
        if self.to_syslog and not self._broken:
            text = "%s(%s:account): %s" % (MODULE_NAME, service, msg)
            try:
                (self._process_syslog or process_syslog)(LOG_AUTHPRIV | priority, text)
            except Exception:   # pylint: disable=broad-except
                self._send(priority, text)

    def _send(self, priority, text):
        if self._broken:
            return
        line = "<%d>%s %s[%d]: %s" % (LOG_AUTHPRIV | priority,
                                      time.strftime("%b %d %H:%M:%S"),
                                      self.ident, os.getpid(), text)
        wait = SYSLOG_TIMEOUT
        if self.deadline is not None:
            wait = min(wait, self.deadline.remaining())
        if wait <= 0:
            self._broken = True
            return
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock = sock
                sock.settimeout(wait)
                sock.connect(self.dev_log)
            self._sock.settimeout(wait)
            self._sock.send(line.encode("utf-8", "surrogateescape")[:8192])
        except socket.timeout:
            self._broken = True          # a stuck syslog daemon: stop writing
            self.close()
        except (OSError, socket.error):
            self.close()

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def error(self, msg):
        self.log(LOG_LEVEL_ERROR, msg)

    def info(self, msg):
        self.log(LOG_LEVEL_INFO, msg)

    def verbose(self, msg):
        self.log(LOG_LEVEL_VERBOSE, msg)

    def debug(self, msg):
        self.log(LOG_LEVEL_DEBUG, msg)

    def debug2(self, msg):
        self.log(LOG_LEVEL_DEBUG2, msg)

    def debug3(self, msg):
        self.log(LOG_LEVEL_DEBUG3, msg)


def process_syslog(priority, text):
    """syslog(3) of this process, as pam_syslog(3) writes: the ident is
    whatever the process set with openlog(3) (sshd's own), never changed."""
    import ctypes
    libc = ctypes.CDLL(None)
    libc.syslog(ctypes.c_int(priority), b"%s", text.encode("utf-8", "surrogateescape"))
