# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local steps (stepd_available) and the slurmstepd Unix-socket protocol."""

import os
import struct
import time

from .sockets import socket
from .constants import (CLIENT_PROTOCOL_VERSION, NO_VAL, PROTOCOL_25_11, REQUEST_ADD_EXTERN_PID,
                        REQUEST_GET_NS_FD, REQUEST_GET_NS_FDS, REQUEST_STEP_UID,
                        REQUEST_X11_DISPLAY, STEPD_TIMEOUT, StepdError, StepdTimeout)


class StepLoc(object):
    """One entry of stepd_available(): a step socket in the spool dir."""

    def __init__(self, directory, nodename, job_id, step_id, het_comp=NO_VAL):
        self.directory = directory
        self.nodename = nodename
        self.job_id = job_id
        self.step_id = step_id
        self.het_comp = het_comp
        self._ctime = None
        self.protocol_version = 0
        self.uid = None

    @property
    def path(self):
        name = "%s_%u.%u" % (self.nodename, self.job_id, self.step_id)
        if self.het_comp != NO_VAL:
            name += ".%u" % self.het_comp
        return os.path.join(self.directory, name)

    @property
    def ctime(self):
        """st_ctime of the step's socket (26.05's "start time"); 0 if gone."""
        if self._ctime is None:
            try:
                self._ctime = os.stat(self.path).st_ctime
            except OSError:
                self._ctime = 0
        return self._ctime

    def __repr__(self):
        return "StepLoc(job=%s, step=%s)" % (self.job_id, self.step_id)


def parse_step_name(name, nodename):
    """(job, step, het_comp) for "<nodename>_<job>.<step>[.<het>]", else None."""
    prefix = nodename + "_"
    if not name.startswith(prefix):
        return None
    fields = name[len(prefix):].split(".")
    if len(fields) not in (2, 3) or not all(f.isdigit() or f == "" for f in fields):
        return None
    numbers = [int(f) & 0xFFFFFFFF if f else 0 for f in fields]
    het = numbers[2] if len(fields) == 3 and fields[2] else NO_VAL
    return numbers[0], numbers[1], het


def list_steps(directory, nodename, log):
    """stepd_available(): steps named <nodename>_<job>.<step>[.<het>] in
    directory, in directory order. A missing directory is an empty list."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        log.error("Domain socket directory %s: %s" % (directory, exc.strerror))
        return []
    steps = []
    for name in names:
        parsed = parse_step_name(name, nodename)
        if parsed is not None:
            steps.append(StepLoc(directory, nodename, *parsed))
    return steps


_INT = struct.Struct("=i")
_UINT = struct.Struct("=I")


class Deadline(object):
    """A budget shared by every blocking call of one module invocation."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()

    def timeout(self, cap):
        left = self.remaining()
        if left <= 0:
            raise StepdTimeout("time budget of the module exhausted")
        return min(cap, left)


class StepdConnection(object):
    """A connection to one slurmstepd (src/common/stepd_api.c protocol:
    native-endian ints, no credential; the stepd checks SO_PEERCRED)."""

    def __init__(self, loc, deadline, timeout=STEPD_TIMEOUT):
        self.loc = loc
        self.deadline = deadline
        self.timeout = timeout
        self.sock = None
        self.protocol_version = 0

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        path = self.loc.path
        if len(path.encode()) >= 108:
            raise StepdError("Unix socket path '%s' is too long" % path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = sock
        try:
            sock.settimeout(self.deadline.timeout(self.timeout))
            sock.connect(path)
        except socket.timeout:
            self.close()
            raise StepdTimeout("connect to %s timed out" % path)
        except (OSError, socket.error) as exc:
            self.close()
            raise StepdError("connect() failed for %s: %s" % (path, os.strerror(exc.errno or 0)))
        self._send(_INT.pack(CLIENT_PROTOCOL_VERSION))
        version = self._recv_int()
        if version < 0:
            self.close()
            raise StepdError("slurmstepd %s rejected the connection" % path)
        self.protocol_version = version
        self.loc.protocol_version = version
        return version

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _send(self, data):
        try:
            self.sock.settimeout(self.deadline.timeout(self.timeout))
            self.sock.sendall(data)
        except socket.timeout:
            raise StepdTimeout("slurmstepd %s: write timed out" % self.loc.path)
        except (OSError, socket.error) as exc:
            raise StepdError("slurmstepd %s: write failed: %s" % (self.loc.path, exc))

    def _recv_exact(self, size):
        chunks, got = [], 0
        while got < size:
            try:
                self.sock.settimeout(self.deadline.timeout(self.timeout))
                chunk = self.sock.recv(size - got)
            except socket.timeout:
                raise StepdTimeout("slurmstepd %s did not answer within %.1fs"
                                   % (self.loc.path, self.timeout))
            except (OSError, socket.error) as exc:
                raise StepdError("slurmstepd %s: read failed: %s" % (self.loc.path, exc))
            if not chunk:
                raise StepdError("slurmstepd %s closed the connection" % self.loc.path)
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _recv_int(self):
        return _INT.unpack(self._recv_exact(4))[0]

    # -- requests ----------------------------------------------------------
    def get_uid(self):
        self._send(_INT.pack(REQUEST_STEP_UID))
        return _UINT.unpack(self._recv_exact(4))[0]

    def add_extern_pid(self, pid):
        self._send(_INT.pack(REQUEST_ADD_EXTERN_PID) + _INT.pack(pid))
        return self._recv_int()

    def x11_display(self):
        """Always reads the whole reply (display, length, xauthority)."""
        self._send(_INT.pack(REQUEST_X11_DISPLAY))
        display = self._recv_int()
        length = self._recv_int()
        xauthority = None
        if length > 0:
            if length > 65536:
                raise StepdError("implausible xauthority length %d" % length)
            xauthority = self._recv_exact(length).split(b"\0", 1)[0].decode("utf-8", "replace")
        return display, xauthority

    def namespace_fds(self):
        """[(type, fd)] of the job's namespaces; [] when it has none.

        REQUEST_GET_NS_FDS (25.11+) or REQUEST_GET_NS_FD (20.11 ... 25.05);
        the fds arrive by SCM_RIGHTS with a one-byte payload."""
        if self.protocol_version >= PROTOCOL_25_11:
            self._send(_INT.pack(REQUEST_GET_NS_FDS))
            count = _UINT.unpack(self._recv_exact(4))[0]
            if count > 64:
                raise StepdError("implausible namespace count %d" % count)
            result = []
            for _index in range(count):
                ns_type = self._recv_int()
                result.append((ns_type, self._recv_fd()))
            return result
        self._send(_INT.pack(REQUEST_GET_NS_FD))
        remote_fd = self._recv_int()
        if remote_fd < 0:
            raise StepdError("stepd_get_ns_fd failed")
        if remote_fd == 0:
            return []
        return [(0, self._recv_fd())]

    def _recv_fd(self):
        size = socket.CMSG_LEN(_INT.size)
        try:
            self.sock.settimeout(self.deadline.timeout(self.timeout))
            data, ancdata, _flags, _addr = self.sock.recvmsg(1, size)
        except socket.timeout:
            raise StepdTimeout("slurmstepd %s: no namespace fd within %.1fs"
                               % (self.loc.path, self.timeout))
        except (OSError, socket.error) as exc:
            raise StepdError("slurmstepd %s: recvmsg failed: %s" % (self.loc.path, exc))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(payload) >= 4:
                return _INT.unpack(payload[:4])[0]
        if not data:
            raise StepdError("slurmstepd %s closed the connection" % self.loc.path)
        raise StepdError("slurmstepd %s sent no file descriptor" % self.loc.path)


def setns(fd, nstype):
    """setns(2) through libc; raises OSError."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
