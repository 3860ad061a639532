# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake slurmstepd: the Unix-socket protocol of src/slurmd/slurmstepd/req.c.

Used for protocol versions that cannot run on this machine (23.02 ... 26.05)
and for fault injection (a stepd that never answers, one that rejects the
handshake, one that closes while adopting). The real slurmstepd is what the
node tests use for everything it can do.
"""

import os
import socket
import struct
import threading

INT = struct.Struct("=i")


class FakeStepd(object):
    """Serve one step socket at <directory>/<nodename>_<job>.<step>."""

    def __init__(self, directory, nodename, job_id, uid, version=0x2600,
                 step_id=0xFFFFFFFC, add_rc=0, x11=(0, None), namespaces=(),
                 behaviour="normal", listen=True):
        self.path = os.path.join(directory, "%s_%d.%d" % (nodename, job_id, step_id))
        self.job_id = job_id
        self.uid = uid
        self.version = version
        self.add_rc = add_rc
        self.x11 = x11
        self.namespaces = list(namespaces)   # [(type, fd)] sent by SCM_RIGHTS
        self.behaviour = behaviour
        self.added = []                      # pids received by ADD_EXTERN_PID
        self.requests = []                   # request codes, in order
        self.client_versions = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        if listen:
            self.start()

    def start(self):
        """listen() and serve; SO_PEERCRED of clients shows who called this."""
        self._sock.listen(64)
        self._thread.start()

    def close(self):
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)    # wakes accept() at once
        except OSError:
            pass
        self._sock.close()
        self._thread.join(2)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _peer = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _recv_int(self, conn):
        data = b""
        while len(data) < 4:
            chunk = conn.recv(4 - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return INT.unpack(data)[0]

    def _handle(self, conn):
        conn.settimeout(5)
        try:
            self.client_versions.append(self._recv_int(conn))
            if self.behaviour == "stopped":
                self._stop.wait(30)          # accepted, never answers (SIGSTOP)
                return
            if self.behaviour == "reject":
                conn.sendall(INT.pack(-1))
                return
            conn.sendall(INT.pack(self.version))
            while True:
                req = self._recv_int(conn)
                self.requests.append(req)
                if req == 20:                                  # REQUEST_STEP_UID
                    if self.behaviour == "uid-once" and self.requests.count(20) > 1:
                        return                       # answers one uid query, then hangs up
                    if self.behaviour == "ends-after-query":   # the job ends meanwhile
                        self.behaviour = "ended"             # (gone before the answer is read)
                        os.unlink(self.path)
                    conn.sendall(struct.pack("=I", self.uid))
                elif req == 22:                                # REQUEST_ADD_EXTERN_PID
                    pid = self._recv_int(conn)
                    if self.behaviour == "ending":
                        return                               # 24.11+: closes, no reply
                    self.added.append(pid)
                    conn.sendall(INT.pack(self.add_rc))
                elif req == 23:                                # REQUEST_X11_DISPLAY
                    display, xauth = self.x11
                    if self.behaviour == "x11-broken":
                        conn.sendall(INT.pack(display) + INT.pack(1 << 30))
                        return
                    conn.sendall(INT.pack(display))
                    if xauth:
                        raw = xauth.encode() + b"\0"
                        conn.sendall(INT.pack(len(raw)) + raw)
                    else:
                        conn.sendall(INT.pack(0))
                elif req == 26:                                # REQUEST_GET_NS_FD
                    if self.behaviour == "ns-refused":
                        conn.sendall(INT.pack(-1))
                    elif not self.namespaces:
                        conn.sendall(INT.pack(0))
                    else:
                        fd = self.namespaces[0][1]
                        conn.sendall(INT.pack(fd))
                        self._send_fd(conn, fd)
                elif req == 28:                                # REQUEST_GET_NS_FDS
                    conn.sendall(struct.pack("=I", len(self.namespaces)))
                    for index, (ns_type, fd) in enumerate(self.namespaces):
                        conn.sendall(INT.pack(ns_type))
                        if self.behaviour == "ns-partial" and index == len(self.namespaces) - 1:
                            return                   # the last fd never comes
                        self._send_fd(conn, fd)
                else:
                    return
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _send_fd(conn, fd):
        conn.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, INT.pack(fd))])


def serve_forever_as(uid, gid, *args, **kwargs):
    """A FakeStepd whose listening socket belongs to uid (SO_PEERCRED reports
    the credentials of the process that called listen()): for a child
    process started by the tests (see tests/unit/test_stepd.py)."""
    import time
    fake = FakeStepd(*args, listen=False, **kwargs)
    os.chmod(fake.path, 0o777)
    os.setgid(gid)
    os.setuid(uid)
    fake.start()
    print("ready", flush=True)
    while True:
        time.sleep(60)
    fake.close()
