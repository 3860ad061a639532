# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the adoption service's tests (no tests here): a temporary node
(slurm.conf, spool, fake stepds, the service as a real process) and the C
client's side of the protocol written in Python."""

import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from fakes.fake_stepd import FakeStepd
from slurm_adopt import protocol as proto

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "roles", "adopt_module", "files")
LAUNCHER = os.path.join(MODULE_DIR, "slurm_adopt_service.py")
NODE = "svcnode"
USER, OTHER = "nobody", "daemon"
UID, OTHER_UID = pwd.getpwnam(USER).pw_uid, pwd.getpwnam(OTHER).pw_uid
MSG_NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
CLONE_NEWNS = 0x00020000


class Outcome(object):
    def __init__(self):
        self.rc = None
        self.refused = None
        self.messages = []
        self.env = {}
        self.events = []         # (monotonic time, type)
        self.setns = []          # (nstype, (st_dev, st_ino) of the fd)
        self.syslog = []         # (severity, text) written by the client
        self.closed = False
        self.reset = False


class Client(object):
    """The C client's side of the protocol, for driving the service."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(10)
        self.sock.connect(path)

    def request(self, args=(), user=USER, service="sshd", env=None, budget_ms=25000,
                extra=b""):
        payload = proto.encode_request(list(args), {"user": user, "service": service}, env,
                                       budget_ms) + extra
        try:
            self.sock.send(proto.pack(proto.MSG_REQUEST, payload))
        except (BrokenPipeError, ConnectionResetError):
            pass                # refused at accept time: run() reads why
        return self

    def run(self, go=True, setns_errno=0, timeout=30):
        """Answer the service until its result (or it closes)."""
        out = Outcome()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                msg_type, payload, fds = proto.recv_packet(self.sock, proto.SERVICE_TYPES,
                                                           max_fds=1)
            except ConnectionResetError:
                out.reset = True     # closed with our request unread; what it sent is next
                continue
            except EOFError:
                out.closed = True
                return out
            out.events.append((time.monotonic(), msg_type))
            if msg_type == proto.MSG_CONV:
                out.messages.append((payload[0], payload[1:].decode()))
            elif msg_type == proto.MSG_PUTENV:
                name, _sep, value = payload.decode().partition("=")
                out.env[name] = value
            elif msg_type == proto.MSG_PREPARE:
                if go is None:
                    self.sock.close()
                    out.closed = True
                    return out
                if go:
                    self.sock.send(proto.pack(proto.MSG_GO))
            elif msg_type == proto.MSG_SYSLOG:
                out.syslog.append((payload[0], payload[1:].decode()))
                self.sock.send(proto.pack(proto.MSG_LOGGED))
            elif msg_type == proto.MSG_SETNS:
                st = os.fstat(fds[0])
                out.setns.append((proto.read_int(payload), (st.st_dev, st.st_ino)))
                os.close(fds[0])
                self.sock.send(proto.int_message(proto.MSG_SETNS_RESULT, setns_errno))
            elif msg_type == proto.MSG_RESULT:
                out.rc = proto.read_int(payload)
                return out
            elif msg_type == proto.MSG_REFUSED:
                out.refused = payload.decode()
                return out
        raise AssertionError("no result within %ss" % timeout)

    def close(self):
        self.sock.close()


class SlowUidStepd(object):
    """A slurmstepd that answers the uid query after `delay` seconds (and
    records ADD_EXTERN_PID): a window between the request and the adoption."""

    def __init__(self, directory, job_id, uid, delay):
        self.path = os.path.join(directory, "%s_%d.%d" % (NODE, job_id, 0xFFFFFFFC))
        self.added = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.uid, self.delay = uid, delay
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        def read_int():
            data = b""
            while len(data) < 4:
                chunk = conn.recv(4 - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return struct.unpack("=i", data)[0]
        try:
            read_int()
            conn.sendall(struct.pack("=i", 0x2600))
            while True:
                req = read_int()
                if req == 20:
                    time.sleep(self.delay)
                    conn.sendall(struct.pack("=I", self.uid))
                elif req == 22:
                    self.added.append(read_int())
                    conn.sendall(struct.pack("=i", 0))
                elif req == 23:
                    conn.sendall(struct.pack("=ii", 0, 0))
                elif req == 26:
                    conn.sendall(struct.pack("=i", 0))
                else:
                    return
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()
        os.unlink(self.path)


class Node(object):
    """slurm.conf and a spool directory in a short temporary path (socket
    paths must stay under 108 bytes), the service's socket, fake stepds."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="saf-svc-")
        self.spool = os.path.join(self.dir, "spool")
        os.mkdir(self.spool)
        self.conf = os.path.join(self.dir, "slurm.conf")
        with open(self.conf, "w") as handle:
            handle.write("NodeName=%s\nSlurmdSpoolDir=%s\n" % (NODE, self.spool))
        self.socket = os.path.join(self.dir, "adopt.sock")
        self.env = {"SLURM_CONF": self.conf}
        self.args = ["nodename=%s" % NODE]
        self.stepds = []
        self.procs = []

    def stepd(self, job, uid, **kwargs):
        stepd = FakeStepd(self.spool, NODE, job, uid, **kwargs)
        self.stepds.append(stepd)
        return stepd

    def start(self, *extra, wait=True):
        log = open(os.path.join(self.dir, "service.log"), "ab")
        proc = subprocess.Popen(
            ["env", "-i", "PATH=/usr/bin:/bin", sys.executable, "-I", "-S", LAUNCHER, "serve",
             "--socket", self.socket, "--idle-exit", "0"] + list(extra),
            stdout=log, stderr=log)
        self.procs.append(proc)
        if wait:
            end = time.monotonic() + 10
            while not os.path.exists(self.socket):
                assert proc.poll() is None, self.service_log()
                assert time.monotonic() < end, "service did not create %s" % self.socket
                time.sleep(0.02)
        return proc

    def service_log(self):
        with open(os.path.join(self.dir, "service.log"), "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def client(self):
        return Client(self.socket)

    def ask(self, user=USER, args=(), **kwargs):
        client = self.client()
        try:
            return client.request(self.args + list(args), user=user, env=self.env).run(**kwargs)
        finally:
            client.close()

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stepd in self.stepds:
            stepd.close()
        shutil.rmtree(self.dir, ignore_errors=True)
