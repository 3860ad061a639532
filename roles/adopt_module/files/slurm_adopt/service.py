# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The adoption service: this package running resident, asked by the C PAM
client (client/pam_slurm_adopt_client.c) over a Unix socket; and the same
code as a one-shot child of sshd when the service cannot answer.

Security model, timing and protocol: docs/service.md. In short:

* Only root may connect (socket mode 0600, and the peer's uid from
  SO_PEERCRED must be 0).
* The process to adopt is the connecting process, as the kernel reports it
  (SO_PEERCRED), never anything the request says. It is pinned right after
  accept (a pidfd, or /proc start time where pidfd_open is missing) and
  checked again just before REQUEST_ADD_EXTERN_PID.
* The flow is the package's (run_safely(Adopter(...))). The client executes
  what the flow asks (messages, pam_putenv, setns) and returns the flow's
  PAM code; it decides nothing itself.
* Before adopting, the service asks the client to commit (MSG_PREPARE ->
  MSG_GO). A client that has given up has closed the connection, so a late
  service never adopts a process whose PAM call has already returned.
"""

import errno
import os
import select
import struct
import sys
import time

from . import protocol as proto
from .constants import LOG_AUTHPRIV, LOG_LEVEL_INFO, SYSLOG_TIMEOUT, TOTAL_BUDGET
from .flow import Adopter, PamContext, report_option_problems, run_safely
from .log import Log
from .options import parse_options
from .sockets import socket

DEFAULT_SOCKET = "/run/slurm-adopt/adopt.sock"
SERVICE_IDENT = "slurm_adopt_service"
HEARTBEAT_INTERVAL = 0.5    # the client gives up after 3 s without a message (before MSG_GO)
REQUEST_WAIT = 2.0          # a client sends its request right after connecting
CLIENT_WAIT = 2.0           # for MSG_GO and MSG_SETNS_RESULT (the client answers at once)
RESULT_MARGIN = 1.0         # the result leaves this long before the client's budget ends
MIN_BUDGET = 0.5            # less left than this: refuse instead of starting the flow
DEFAULT_WORKERS = 16
DEFAULT_MAX_PENDING = 512
DEFAULT_IDLE_EXIT = 600.0
_UCRED = struct.Struct("=iII")
_SYS_PIDFD_OPEN = 434       # the same numbers on every Linux architecture (5.3+)
_SYS_PIDFD_GETFD = 438      # (5.6+)
_SO_DOMAIN = 39             # socket(7), the same on every architecture


class PeerGone(Exception):
    """The client closed the connection or its process exited."""


class Refused(Exception):
    """The connection is not served (not root, no pid, malformed request, busy)."""


class _NoLock(object):
    """The child serves one connection in one thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def pidfd_open(pid):
    """A pidfd for pid: os.pidfd_open (3.9+) or the raw syscall. OSError
    (ENOSYS on kernels before 5.3, ESRCH when pid is gone)."""
    if hasattr(os, "pidfd_open"):
        return os.pidfd_open(pid)  # novermin (guarded: 3.9+)
    import ctypes
    return _syscall(_SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))


_LIBC = []


def _syscall(number, *args):
    import ctypes
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
        _LIBC[0].syscall.restype = ctypes.c_long
    result = _LIBC[0].syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def pidfd_getfd(pidfd, targetfd):
    """A duplicate, in this process, of descriptor targetfd of the process
    pinned by pidfd (pidfd_getfd, Linux 5.6+; root with CAP_SYS_PTRACE)."""
    import ctypes
    return _syscall(_SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                    ctypes.c_uint(0))


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): with the pid
    it names one process for the life of the system. None when gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            raw = handle.read()
    except (IOError, OSError):
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


class Peer(object):
    """One connection of a PAM client. The process to adopt is the peer as
    the kernel reports it, pinned at accept time."""

    def __init__(self, sock, lock=None):
        self.sock = sock
        self.lock = lock or _NoLock()
        self.accepted = time.monotonic()
        self.closed = False
        self.pidfd = None
        self.start_time = None
        pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       _UCRED.size))
        self.pid, self.uid = pid, uid
        # Non-blocking for good: every wait is an explicit poll, so that a
        # heartbeat or a refusal never waits for a client that does not read.
        sock.setblocking(False)

    def pin(self):
        """Check the peer and pin its process. Raises Refused or PeerGone."""
        if self.uid != 0:
            raise Refused("peer uid %d is not root; only sshd's PAM client (root) is served"
                          % self.uid)
        if self.pid <= 0:
            raise Refused("the peer's pid is not visible here (another pid namespace)")
        try:
            self.pidfd = pidfd_open(self.pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise PeerGone("process %d exited before it was pinned" % self.pid)
            if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
                raise
            self.start_time = proc_start_time(self.pid)
            if self.start_time is None:
                raise PeerGone("process %d exited before it was pinned" % self.pid)
        # SO_PEERCRED named the process at connect time. If that process had
        # exited and its pid been reused before the pin, its end of the
        # connection would have been closed: a connection still open means
        # the pinned process is the peer.
        if self._hung_up():
            raise PeerGone("process %d closed the connection" % self.pid)

    def _hung_up(self):
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLRDHUP)
        for _fd, events in poller.poll(0):
            if events & (select.POLLHUP | select.POLLRDHUP | select.POLLERR | select.POLLNVAL):
                return True
        return False

    def _exited(self):
        if self.pidfd is not None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return bool(poller.poll(0))
        return proc_start_time(self.pid) != self.start_time

    def check_alive(self):
        """The pinned process still runs and still holds the connection."""
        if self._exited():
            raise PeerGone("process %d exited" % self.pid)
        if self._hung_up():
            raise PeerGone("process %d closed the connection" % self.pid)

    # -- messages --------------------------------------------------------
    def _wait(self, events, timeout):
        poller = select.poll()
        poller.register(self.sock.fileno(), events)
        poller.poll(max(timeout, 0) * 1000)

    def send(self, packet, fds=(), wait=True):
        """Send one packet, waiting at most CLIENT_WAIT for room; with
        wait=False (heartbeats) never wait: a full queue skips the packet."""
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                          struct.pack("=%di" % len(fds), *fds))]
        end = time.monotonic() + CLIENT_WAIT
        while True:
            with self.lock:
                if self.closed:
                    raise PeerGone("connection already closed")
                try:
                    self.sock.sendmsg([packet], ancillary, socket.MSG_NOSIGNAL)
                    return
                except (BlockingIOError, InterruptedError):
                    if not wait:
                        raise
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("process %d does not read its messages" % self.pid)
            self._wait(select.POLLOUT, left)

    def send_quiet(self, packet):
        """Send, ignoring a client that is gone (the answer no longer matters)."""
        try:
            self.send(packet)
            return True
        except (OSError, PeerGone, socket.timeout):
            return False

    def receive(self, allowed, timeout):
        """(type, payload) of the client's next message within timeout."""
        end = time.monotonic() + timeout
        while True:
            try:
                msg_type, payload, _fds = proto.recv_packet(self.sock, allowed)
                return msg_type, payload
            except (BlockingIOError, InterruptedError):
                pass
            except EOFError:
                raise PeerGone("process %d closed the connection" % self.pid)
            left = end - time.monotonic()
            if left <= 0:
                raise PeerGone("no answer from process %d within %.1fs" % (self.pid, timeout))
            self._wait(select.POLLIN, left)

    def refuse(self, reason):
        """Tell the client why (it falls back), read what it sent, close. A
        connection closed with unread data resets the peer's next read."""
        self.send_quiet(proto.refused(reason))
        try:
            while self.sock.recv(proto.MAX_PACKET + 1):
                pass
        except (OSError, socket.timeout):
            pass
        self.close()

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                self.sock.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class PeerLog(Log):
    """The flow's log for one client. Its own lines (ident pam_slurm_adopt)
    carry the pid of the sshd process it works for, as they do under
    pam_python and the C module. The lines the C module writes with
    pam_syslog(3) are written by the client, with syslog(3) inside sshd: the
    same ident and pid as the C module's."""

    def __init__(self, level, peer):
        Log.__init__(self, level, process_syslog=self._client_syslog)
        self.peer = peer

    def _client_syslog(self, priority, text):
        """Raises when the client cannot write it: Log then writes it itself.
        The client's MSG_LOGGED keeps the lines in order with ours."""
        if not self.peer.send_quiet(proto.syslog(priority & 7, text)):
            raise PeerGone("client gone")
        self.peer.receive((proto.MSG_LOGGED,), CLIENT_WAIT)

    def _send(self, priority, text):
        # Log._send with the client's pid instead of ours (Log has no pid
        # parameter; see docs/service.md, "Integration").
        if self._broken:
            return
        line = "<%d>%s %s[%d]: %s" % (LOG_AUTHPRIV | priority, time.strftime("%b %d %H:%M:%S"),
                                      self.ident, self.peer.pid, text)
        wait = SYSLOG_TIMEOUT
        if self.deadline is not None:
            wait = min(wait, self.deadline.remaining())
        if wait <= 0:
            self._broken = True
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.settimeout(wait)
                self._sock.connect("/dev/log")
            self._sock.settimeout(wait)
            self._sock.send(line.encode("utf-8", "surrogateescape")[:8192])
        except socket.timeout:
            self._broken = True
            self.close()
        except (OSError, socket.error):
            self.close()


class ServiceContext(PamContext):
    """The PAM side, at the other end of the connection: messages,
    pam_putenv and setns are carried out by the client inside sshd."""

    can_setns = True

    def __init__(self, peer, request):
        self.peer = peer
        self.pid = peer.pid
        self.service = request.items.get("service")
        self.user = request.items.get("user")
        self.request = request

    def send_user_msg(self, text):
        self.peer.send_quiet(proto.conv(proto.PAM_ERROR_MSG, text))

    def putenv(self, name, value):
        self.peer.send_quiet(proto.putenv(name, value))

    def netinfo(self):
        """callerid_get_own_netinfo() for the client's process: its socket
        descriptors, in /proc/<pid>/fd order. Each one is borrowed with
        pidfd_getfd and asked directly (getsockname/getpeername), as
        pam_python asks its own: reading /proc/<pid>/net/tcp makes the kernel
        walk its whole connection table (10-20 ms here). When a socket cannot
        tell (listening, an error) or borrowing fails (kernel < 5.6), the
        /proc tables decide, as for the pam_exec helper."""
        from . import callerid
        probe = getattr(callerid, "_own_socket_conn", None)
        if probe is not None and self.peer.pidfd is not None:
            fd_dir = "/proc/%d/fd" % self.pid
            try:
                names = os.listdir(fd_dir)
            except OSError:
                names = []
            for name in names:
                try:
                    is_socket = (os.stat(os.path.join(fd_dir, name)).st_mode
                                 & 0o170000) == 0o140000
                except OSError:
                    continue                # closed meanwhile
                if not is_socket:
                    continue
                try:
                    mine = pidfd_getfd(self.peer.pidfd, int(name))
                except (OSError, ValueError):
                    break                   # cannot borrow it: the tables decide
                try:
                    found = probe(mine)
                finally:
                    os.close(mine)
                if found is None:
                    continue                # not a TCP socket
                if isinstance(found, callerid.CallerConn):
                    return found
                break                       # only the tables can tell
            else:
                return None                 # no TCP socket at all
        return callerid.own_netinfo(self.pid)

    def commit(self, deadline):
        """Right before the process is adopted: the client must still be
        waiting (MSG_PREPARE -> MSG_GO), and the pinned process must still be
        the peer. Raises PeerGone otherwise."""
        self.peer.check_alive()
        try:
            self.peer.send(proto.pack(proto.MSG_PREPARE))
        except (OSError, socket.timeout) as exc:
            raise PeerGone("cannot reach process %d: %s" % (self.pid, exc))
        self.peer.receive((proto.MSG_GO,), min(CLIENT_WAIT, max(deadline.remaining(), 0)))
        self.peer.check_alive()

    def setns(self, fd, nstype):
        """setns(fd, nstype) in the client's process; OSError as setns(2)."""
        try:
            self.peer.send(proto.int_message(proto.MSG_SETNS, nstype), fds=[fd])
            _type, payload = self.peer.receive((proto.MSG_SETNS_RESULT,), CLIENT_WAIT)
        except (OSError, socket.timeout, PeerGone) as exc:
            raise OSError(errno.EPIPE, "client gone: %s" % exc)
        err = proto.read_int(payload)
        if err:
            raise OSError(err, os.strerror(err))


class ServiceAdopter(Adopter):
    """The flow, with the client's commitment before the adoption; setns is
    carried out in the client (ServiceContext.setns)."""

    def adopt(self, step):
        if not self.dry_run:
            try:
                self.ctx.commit(self.deadline)
            except PeerGone as exc:
                self.log.error("not adopting process %d into job %u: %s"
                               % (self.ctx.pid, step.job_id, exc))
                return False
        return Adopter.adopt(self, step)


class ConfigCache(object):
    """slurm.conf (with its Include files) parsed once and reused while every
    one of its files is the same: same device, inode, size, mtime and ctime
    (nanoseconds). A parse whose files changed less than RACY_SECONDS before
    it is not kept (a second change within one timestamp tick would be
    invisible), nor one that failed. Each login gets its own copy, and
    cgroup.conf is read again by every copy that needs it: jobs, uids,
    credentials and cgroup.conf are never cached."""

    RACY_SECONDS = 2.0

    def __init__(self, loader):
        import threading
        self.loader = loader
        self.lock = threading.Lock()
        self.entries = {}          # path -> (parsed config, identity of its files)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def identity(paths):
        out = []
        for path in paths:
            st = os.stat(path)
            out.append((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(out)

    def load(self, path):
        with self.lock:
            entry = self.entries.get(path)
        if entry is not None:
            conf, identity = entry
            try:
                if self.identity([item[0] for item in identity]) == identity:
                    self.hits += 1
                    return self.fresh(conf)
            except OSError:
                pass
        conf = self.loader(path)
        self.misses += 1
        try:
            identity = self.identity(conf.files)
            newest = max(max(item[4], item[5]) for item in identity) / 1e9
            keep = time.time() - newest > self.RACY_SECONDS
        except (OSError, ValueError):
            keep = False
        with self.lock:
            if keep:
                self.entries[path] = (conf, identity)
            else:
                self.entries.pop(path, None)
        return self.fresh(conf)

    @staticmethod
    def fresh(conf):
        """A copy for one login: the cached object itself is never handed
        out, so what a login reads lazily (cgroup.conf) stays with its copy."""
        import copy
        return copy.copy(conf)


def install_config_cache():
    """In the resident service only: the flow's SlurmConfig.load goes through
    a ConfigCache (the flow has no hook for it; see docs/service.md,
    "Integration"). Returns the cache."""
    from . import flow
    from .slurmconf import SlurmConfig
    cache = ConfigCache(SlurmConfig.load)

    class CachedSlurmConfig(SlurmConfig):
        @classmethod
        def load(cls, path):
            return cache.load(path)
    flow.SlurmConfig = CachedSlurmConfig
    return cache


def serve_request(peer, service_log):
    """Read one request from a pinned peer, run the flow, send the result.
    Returns the PAM code sent, or None when the request was not served."""
    try:
        _type, payload = peer.receive((proto.MSG_REQUEST,), REQUEST_WAIT)
        request = proto.decode_request(payload)
        budget = min(TOTAL_BUDGET, request.budget_ms / 1000.0
                     - (time.monotonic() - peer.accepted) - RESULT_MARGIN)
        if budget < MIN_BUDGET:
            raise Refused("no time left of the client's budget (%d ms)" % request.budget_ms)
        peer.check_alive()
    except (proto.ProtocolError, Refused, OSError, socket.timeout) as exc:
        service_log.error("request of process %d refused: %s" % (peer.pid, exc))
        peer.send_quiet(proto.refused(str(exc)))
        return None
    except PeerGone as exc:
        service_log.info("request of process %d dropped: %s" % (peer.pid, exc))
        return None
    opts = parse_options(request.args)
    ctx = ServiceContext(peer, request)
    log = PeerLog(opts.log_level, peer)
    try:
        report_option_problems(opts, log, ctx.service)
        adopter = ServiceAdopter(opts, ctx, log, environ=request.env)
        # The client's budget, when shorter, ends the flow's; the part kept
        # for the adoption shrinks in proportion (the log keeps its reference).
        deadline = adopter.deadline
        if budget < deadline.remaining():
            deadline.reserve *= budget / deadline.remaining()
            deadline.end = time.monotonic() + budget
        rc = run_safely(adopter)
    finally:
        log.close()
    peer.send_quiet(proto.int_message(proto.MSG_RESULT, rc))
    return rc


def serve_connection(peer, service_log):
    """Pin, serve and close one connection; nothing escapes."""
    try:
        serve_request(peer, service_log)
    except Exception as exc:   # pylint: disable=broad-except
        service_log.error("internal error serving process %d: %s: %s"
                          % (peer.pid, type(exc).__name__, exc))
        peer.send_quiet(proto.refused("internal error"))
    finally:
        peer.close()


# ---------------------------------------------------------------------------
# the fallback child: one request over the socketpair on fd 0
# ---------------------------------------------------------------------------

def child_main(fd=0):
    """Run by the C client (python3 -I -S slurm_adopt_service.py child) when
    the service cannot answer. The peer of fd 0 is the client's socketpair,
    created by sshd: SO_PEERCRED names sshd, the process to adopt."""
    service_log = Log(LOG_LEVEL_INFO, ident=SERVICE_IDENT)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fd)
        peer = Peer(sock)
        try:
            peer.pin()
        except (Refused, PeerGone) as exc:
            service_log.error("fallback child: %s" % exc)
            peer.refuse(str(exc))
            return 1
        serve_connection(peer, service_log)
        return 0
    finally:
        service_log.close()


# ---------------------------------------------------------------------------
# the resident service
# ---------------------------------------------------------------------------

def systemd_listener(environ=None):
    """The socket systemd passed (LISTEN_FDS=1, fd 3), or None."""
    environ = os.environ if environ is None else environ
    if environ.get("LISTEN_PID") != str(os.getpid()) or environ.get("LISTEN_FDS") != "1":
        return None
    import socket as socket_module
    listener = socket_module.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, 3)
    if (listener.getsockopt(socket.SOL_SOCKET, _SO_DOMAIN) != socket.AF_UNIX
            or listener.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_SEQPACKET
            or not listener.getsockopt(socket.SOL_SOCKET, socket_module.SO_ACCEPTCONN)):
        raise SystemExit("slurm_adopt_service: the socket from systemd must be a listening "
                         "AF_UNIX SOCK_SEQPACKET socket (ListenSequentialPacket=)")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    return listener


def own_listener(path):
    """Listen on path ourselves (no systemd): mode 0600 root, a stale socket
    file replaced, a live one left alone."""
    import socket as socket_module
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    if os.path.exists(path):
        probe = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_SEQPACKET)
        try:
            probe.settimeout(1)
            probe.connect(path)
        except OSError:
            os.unlink(path)            # nobody listens: stale
        else:
            raise SystemExit("slurm_adopt_service: another service listens on %s" % path)
        finally:
            probe.close()
    # Bound and listening under a temporary name, then renamed into place:
    # a client never finds a socket file that refuses connections.
    listener = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_SEQPACKET)
    temporary = "%s.%d" % (path, os.getpid())
    old = os.umask(0o177)
    try:
        listener.bind(temporary)
    finally:
        os.umask(old)
    os.chmod(temporary, 0o600)
    listener.listen(128)
    os.rename(temporary, path)
    return listener


class Server(object):
    """Accepts connections, pins each peer at once, and serves them with a
    bounded pool of worker threads. Every accepted connection gets a
    heartbeat every HEARTBEAT_INTERVAL until its result is sent."""

    def __init__(self, listener, workers=DEFAULT_WORKERS, max_pending=DEFAULT_MAX_PENDING,
                 idle_exit=DEFAULT_IDLE_EXIT, path=None):
        import queue
        import threading
        self.threading = threading
        self.listener = listener
        self.path = path             # our own socket file (unlinked at exit), or None
        self.workers = workers
        self.max_pending = max_pending
        self.idle_exit = idle_exit
        self.queue = queue.Queue()
        self.active = set()
        self.active_lock = threading.Lock()
        self.stop = threading.Event()
        self.last_activity = time.monotonic()
        self.log = Log(LOG_LEVEL_INFO, ident=SERVICE_IDENT)
        self.served = 0
        self.refused = 0
        self._threads = []

    def start_threads(self):
        for index in range(self.workers):
            thread = self.threading.Thread(target=self._worker, name="worker-%d" % index)
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        thread = self.threading.Thread(target=self._heartbeats, name="heartbeat")
        thread.daemon = True
        thread.start()

    def _worker(self):
        while True:
            peer = self.queue.get()
            if peer is None:
                return
            try:
                serve_connection(peer, self.log)
            finally:
                with self.active_lock:
                    self.active.discard(peer)
                    self.served += 1
                    self.last_activity = time.monotonic()

    def _heartbeats(self):
        packet = proto.pack(proto.MSG_HEARTBEAT)
        while True:
            if self.stop.is_set():
                time.sleep(HEARTBEAT_INTERVAL)      # shutting down: until the last result
            else:
                self.stop.wait(HEARTBEAT_INTERVAL)
            with self.active_lock:
                peers = list(self.active)
            if self.stop.is_set() and not peers:
                return
            for peer in peers:
                try:
                    peer.send(packet, wait=False)
                except (OSError, PeerGone):
                    pass

    def accept_ready(self):
        """Accept every connection waiting in the listen queue."""
        self.listener.setblocking(False)
        while True:
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.log.error("accept: %s; the connection stays queued" % exc)
                    time.sleep(0.05)
                    return
                raise
            self.last_activity = time.monotonic()
            peer = Peer(conn, self.threading.Lock())
            try:
                peer.pin()
                peer.send(proto.pack(proto.MSG_HEARTBEAT), wait=False)
                with self.active_lock:
                    if len(self.active) >= self.max_pending:
                        raise Refused("busy: %d requests pending" % len(self.active))
                    self.active.add(peer)
            except Refused as exc:
                self.refused += 1
                self.log.error("connection of process %d refused: %s" % (peer.pid, exc))
                peer.refuse(str(exc))
                continue
            except (PeerGone, OSError) as exc:
                self.log.info("connection of process %d dropped: %s" % (peer.pid, exc))
                peer.close()
                continue
            self.queue.put(peer)

    def run(self):
        """Serve until stopped (SIGTERM) or idle for idle_exit seconds."""
        self.start_threads()
        poller = select.poll()
        poller.register(self.listener.fileno(), select.POLLIN)
        try:
            while not self.stop.is_set():
                if poller.poll(500):
                    self.accept_ready()
                with self.active_lock:
                    busy = bool(self.active)
                if (self.idle_exit and not busy
                        and time.monotonic() - self.last_activity > self.idle_exit):
                    self.log.info("idle for %ds: exiting" % self.idle_exit)
                    break
        finally:
            self.shutdown()

    def shutdown(self):
        """Stop accepting. Under systemd, connections not yet accepted stay
        queued on systemd's socket for the next instance. Our own socket file
        is removed first (new clients fall back to the child); what is
        already queued on it is still served. Accepted ones are finished."""
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.accept_ready()
            self.listener.close()
        self.stop.set()
        for _thread in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join(TOTAL_BUDGET + 10)
        self.log.close()


def _raise_nofile():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def serve_main(args):
    import argparse
    import signal
    parser = argparse.ArgumentParser(prog="slurm_adopt_service.py serve",
                                     description="The pam_slurm_adopt adoption service.")
    parser.add_argument("--socket", default=DEFAULT_SOCKET,
                        help="listen here when systemd passes no socket (default %(default)s)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="requests served at once (default %(default)s)")
    parser.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                        help="accepted requests waiting or being served; more are refused "
                             "(the client falls back) (default %(default)s)")
    parser.add_argument("--idle-exit", type=float, default=DEFAULT_IDLE_EXIT,
                        help="exit after this many seconds without a request; 0: never "
                             "(default %(default)s)")
    ns = parser.parse_args(args)
    if os.geteuid() != 0:
        raise SystemExit("slurm_adopt_service: must run as root (slurmstepd adopts only "
                         "for root or SlurmUser)")
    if ns.workers < 1 or ns.max_pending < 1:
        raise SystemExit("slurm_adopt_service: --workers and --max-pending must be >= 1")
    _raise_nofile()
    listener = systemd_listener()
    path = None
    if listener is None:
        listener = own_listener(ns.socket)
        path = ns.socket
    install_config_cache()
    server = Server(listener, ns.workers, ns.max_pending, ns.idle_exit, path)

    def stop(_signum, _frame):
        server.stop.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.log.info("serving on %s (%s), %d workers"
                    % (path or "the socket from systemd", "pid %d" % os.getpid(), ns.workers))
    server.run()
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child_main(0)
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    sys.stderr.write("usage: slurm_adopt_service.py serve [--socket PATH] [--workers N] "
                     "[--max-pending N] [--idle-exit S]\n"
                     "       slurm_adopt_service.py child   (run by the PAM client, "
                     "request on fd 0)\n")
    return 2
