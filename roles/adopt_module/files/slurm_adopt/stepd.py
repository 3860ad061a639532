# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Local steps (stepd_available) and the slurmstepd Unix-socket protocol."""

import errno
import os
import struct
import time

from .sockets import socket
from .constants import (CLIENT_PROTOCOL_VERSION, MAX_PARALLEL_STEPDS, NO_VAL, PROTOCOL_25_11,
                        REQUEST_ADD_EXTERN_PID, REQUEST_GET_NS_FD, REQUEST_GET_NS_FDS,
                        REQUEST_STEP_UID, REQUEST_X11_DISPLAY, STEPD_TIMEOUT, StepdError,
                        StepdTimeout, StepdUntrusted)


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
        """st_ctime of the step's socket in whole seconds (26.05's "start
        time", a time_t); 0 if gone."""
        if self._ctime is None:
            try:
                self._ctime = int(os.stat(self.path).st_ctime)
            except OSError:
                self._ctime = 0
        return self._ctime


def parse_step_name(name, nodename):
    """(job, step, het_comp) for "<nodename>_<job>.<step>[.<het>]", else None."""
    prefix = nodename + "_"
    if not name.startswith(prefix):
        return None
    fields = name[len(prefix):].split(".")
    if len(fields) not in (2, 3) or not all(_ascii_digits(f) for f in fields):
        return None
    numbers = [int(f) & 0xFFFFFFFF if f else 0 for f in fields]
    het = numbers[2] if len(fields) == 3 and fields[2] else NO_VAL
    return numbers[0], numbers[1], het


def _ascii_digits(text):
    """[0-9]* as in Slurm's POSIX regex: str.isdigit() would also take
    other scripts' digits, which int() then refuses or misreads."""
    return all("0" <= char <= "9" for char in text)


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
    """A budget shared by every blocking call of one module invocation.

    `reserve` seconds at the end are kept for the user's own adoption:
    calls made with keep_reserve=True (the uid queries, the callerid RPC)
    may only use the time before it."""

    def __init__(self, seconds, reserve=0.0):
        self.end = time.monotonic() + seconds
        self.reserve = reserve

    def remaining(self, keep_reserve=False):
        left = self.end - time.monotonic()
        return left - self.reserve if keep_reserve else left

    def until(self, keep_reserve=False):
        """The monotonic time by which such calls must end."""
        return self.end - self.reserve if keep_reserve else self.end

    def timeout(self, cap, keep_reserve=False):
        left = self.remaining(keep_reserve)
        if left <= 0:
            raise StepdTimeout("time budget of the module exhausted")
        return min(cap, left)


def peer_uid(sock):
    """uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return struct.unpack("=iII", raw)[1]


def check_peer(sock, loc, trusted_uids):
    """Only root or a Slurm user may answer on a step socket: sshd, as root,
    trusts the answer and joins the namespaces it hands over."""
    try:
        uid = peer_uid(sock)
    except (OSError, socket.error) as exc:
        raise StepdError("slurmstepd %s: cannot read the peer's credentials: %s" % (loc.path, exc))
    if uid not in trusted_uids:
        raise StepdUntrusted("%s is served by uid %u, not by root or the Slurm user; "
                             "ignoring job %u" % (loc.path, uid, loc.job_id))


class StepdConnection(object):
    """A connection to one slurmstepd (src/common/stepd_api.c protocol:
    native-endian ints, no credential; the stepd checks SO_PEERCRED)."""

    def __init__(self, loc, deadline, timeout=None, trusted_uids=(0,), sock=None,
                 version=0):
        self.loc = loc
        self.deadline = deadline
        self.timeout = STEPD_TIMEOUT if timeout is None else timeout
        self.trusted_uids = trusted_uids
        self.sock = sock            # an open connection (query_steps) or None
        self.protocol_version = version

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        if self.sock is not None:          # already connected and handshaken
            return self.protocol_version
        path = self.loc.path
        if len(path.encode()) >= 108:
            raise StepdError("Unix socket path '%s' is too long" % path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = sock
        try:
            sock.settimeout(self.deadline.timeout(self.timeout))
            sock.connect(path)
        except (OSError, socket.error) as exc:      # a full backlog is EAGAIN, at once
            self.close()
            raise StepdError("connect() failed for %s: %s" % (path, os.strerror(exc.errno or 0)))
        try:
            check_peer(sock, self.loc, self.trusted_uids)
        except StepdError:
            self.close()
            raise
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
            try:
                for _index in range(count):
                    ns_type = self._recv_int()
                    result.append((ns_type, self._recv_fd()))
            except StepdError:
                for _type, fd in result:      # never leave a namespace fd open in sshd
                    os.close(fd)
                raise
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
        fds = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(struct.unpack("=%di" % (usable // 4), payload[:usable]))
        if fds:
            for extra in fds[1:]:             # one fd per message; close anything more
                os.close(extra)
            return fds[0]
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


class Answer(object):
    """What one step socket said to the uid query."""

    def __init__(self, loc):
        self.loc = loc
        self.uid = None          # the job owner, when the stepd answered
        self.version = 0
        self.failure = None      # "timeout", "untrusted", "error"
        self.message = None
        self.sock = None         # kept open for the owner's steps (reused for the adoption)


class _Pending(object):
    def __init__(self, answer, sock, started):
        self.answer = answer
        self.sock = sock
        self.started = started
        self.buf = b""
        self.connected = False


def query_steps(steps, deadline, trusted_uids, keep_uid=None, timeout=None,
                parallel=MAX_PARALLEL_STEPDS):
    """REQUEST_STEP_UID of every step, asked of all slurmstepds at once.

    Each socket gets the handshake version and REQUEST_STEP_UID in one
    write (slurmstepd reads the version, answers it, then loops on
    requests), and one poll loop collects the answers. A stepd that does
    not answer within `timeout` of its connect is given up, so N silent
    stepds cost about one timeout. The loop ends before the deadline's
    reserve. The sockets of steps owned by `keep_uid` stay open (handshake
    done) for the adoption; every other socket is closed.
    Returns one Answer per step, in the order of `steps`."""
    import select
    timeout = STEPD_TIMEOUT if timeout is None else timeout
    answers = [Answer(loc) for loc in steps]
    queue = list(answers)
    pending = {}                 # fd -> _Pending
    poller = select.poll()
    request = _INT.pack(CLIENT_PROTOCOL_VERSION) + _INT.pack(REQUEST_STEP_UID)
    end = deadline.until(keep_reserve=True)

    def finish(item, failure=None, message=None):
        answer = item.answer
        answer.failure, answer.message = failure, message
        fd = item.sock.fileno()
        poller.unregister(fd)
        del pending[fd]
        if failure is None and keep_uid is not None and answer.uid == keep_uid:
            item.sock.setblocking(True)
            answer.sock = item.sock
        else:
            item.sock.close()

    def start(answer):
        path = answer.loc.path
        if len(path.encode()) >= 108:
            answer.failure, answer.message = "error", "Unix socket path '%s' is too long" % path
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        item = _Pending(answer, sock, time.monotonic())
        pending[sock.fileno()] = item
        poller.register(sock, 0)          # watched for input once connected
        try_connect(item)

    def try_connect(item):
        code = item.sock.connect_ex(item.answer.loc.path)
        if code == errno.EAGAIN:          # backlog full: a stopped or flooded stepd; retry
            return
        if code not in (0, errno.EISCONN):
            finish(item, "error", "connect() failed for %s: %s"
                   % (item.answer.loc.path, os.strerror(code)))
            return
        item.connected = True
        try:
            check_peer(item.sock, item.answer.loc, trusted_uids)
            item.sock.send(request)       # 8 bytes into an empty socket buffer
        except StepdUntrusted as exc:
            finish(item, "untrusted", str(exc))
            return
        except (StepdError, OSError, socket.error) as exc:
            finish(item, "error", "slurmstepd %s: %s" % (item.answer.loc.path, exc))
            return
        poller.modify(item.sock, select.POLLIN)

    try:
        while queue or pending:
            while queue and len(pending) < parallel:
                start(queue.pop(0))
            if not pending:
                continue
            now = time.monotonic()
            wait = min([item.started + timeout for item in pending.values()] + [end]) - now
            events = poller.poll(max(0, min(wait, 0.02 if _connecting(pending) else wait)) * 1000)
            for fd, _event in events:
                item = pending.get(fd)
                if item is None:
                    continue
                if not item.connected:
                    try_connect(item)
                    continue
                try:
                    chunk = item.sock.recv(8 - len(item.buf))
                except (OSError, socket.error) as exc:
                    if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EINTR):
                        continue
                    finish(item, "error", "slurmstepd %s: read failed: %s"
                           % (item.answer.loc.path, exc))
                    continue
                item.buf += chunk
                if len(item.buf) >= 4 and _INT.unpack(item.buf[:4])[0] < 0:
                    finish(item, "error", "slurmstepd %s rejected the connection"
                           % item.answer.loc.path)
                elif len(item.buf) == 8:
                    item.answer.version = _INT.unpack(item.buf[:4])[0]
                    item.answer.loc.protocol_version = item.answer.version
                    item.answer.uid = item.answer.loc.uid = _UINT.unpack(item.buf[4:])[0]
                    finish(item)
                elif not chunk:
                    finish(item, "error", "slurmstepd %s closed the connection"
                           % item.answer.loc.path)
            now = time.monotonic()
            for item in list(pending.values()):
                if not item.connected and now < min(item.started + timeout, end):
                    try_connect(item)
                    if item.answer.failure is not None or item.connected:
                        continue
                if now >= end:
                    finish(item, "timeout", "slurmstepd %s: time budget of the module exhausted"
                           % item.answer.loc.path)
                elif now >= item.started + timeout:
                    finish(item, "timeout", "slurmstepd %s did not answer within %.1fs"
                           % (item.answer.loc.path, timeout))
            if time.monotonic() >= end:
                for answer in queue:
                    answer.failure = "timeout"
                    answer.message = ("slurmstepd %s: time budget of the module exhausted"
                                      % answer.loc.path)
                del queue[:]
    finally:
        for item in list(pending.values()):
            item.sock.close()
    return answers


def _connecting(pending):
    return any(not item.connected for item in pending.values())
