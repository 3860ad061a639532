# SPDX-License-Identifier: GPL-3.0-or-later
"""The C PAM client (roles/adopt_module/files/client), loaded by the real
libpam (plugins/module_utils/_pam_eval.py runs the transactions), against
the real service, the real fallback child, and fake services that misbehave
on purpose.

Each build of the client compiles in its socket path, its fallback launcher
and (here, to keep the tests short) a total budget of 6 s and a silence limit
of 1 s."""

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from slurm_adopt import protocol as proto
from test_service_support import CLONE_NEWNS, LAUNCHER, MSG_NO_JOBS, MODULE_DIR, OTHER_UID, UID, Node

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "plugins", "module_utils"))

import _pam_eval  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="libpam in a mount namespace and a root-only "
                                                 "service: run as root"),
]

BUILD = os.path.join(MODULE_DIR, "client", "build.sh")
TOTAL_MS, SILENCE_MS = 6000, 1000
SERVICE = "saf-client"
MARK = "stack-went-on-after-the-client"


def build(directory, name, socket_path, python="/usr/bin/python3", launcher=LAUNCHER, cflags=None):
    out = os.path.join(directory, name)
    env = dict(os.environ, EXTRA_DEFINES="-DSAF_TOTAL_MS=%d -DSAF_SILENCE_MS=%d"
               % (TOTAL_MS, SILENCE_MS))
    if cflags:
        env["CFLAGS"] = cflags
    subprocess.run(["sh", BUILD, out, socket_path, python, launcher], check=True, env=env)
    return out


@pytest.fixture(scope="module")
def builds():
    """One socket path for the whole module (compiled in); the client builds."""
    directory = tempfile.mkdtemp(prefix="saf-cli-")
    os.chmod(directory, 0o755)
    sock = os.path.join(directory, "adopt.sock")
    hang = os.path.join(directory, "hang.py")
    with open(hang, "w") as handle:
        handle.write("import time\ntime.sleep(120)\n")
    yield {
        "dir": directory,
        "socket": sock,
        "client": build(directory, "client.so", sock),
        "nopython": build(directory, "nopython.so", sock, python="/nonexistent/python3"),
        "hang": build(directory, "hang.so", sock, launcher=hang),
        "hang_script": hang,
    }
    subprocess.run(["rm", "-rf", directory], check=False)


@pytest.fixture
def node(builds, monkeypatch):
    n = Node()
    n.socket = builds["socket"]          # the path compiled into the client
    monkeypatch.setenv("SLURM_CONF", n.conf)
    yield n
    n.close()
    if os.path.exists(builds["socket"]):
        os.unlink(builds["socket"])


def pam(node, module, options=(), user="nobody", stack=None, **query):
    """One pam_acct_mgmt through the client. The stack goes on past the
    client only on PAM_IGNORE, where pam_echo shows MARK."""
    line = " ".join(["account", "[success=done ignore=ignore default=die]", module,
                     "service=%s" % SERVICE] + node.args + list(options))
    tree = os.path.join(node.dir, "tree")
    os.makedirs(os.path.join(tree, "etc", "pam.d"), exist_ok=True)
    with open(os.path.join(tree, "etc", "pam.d", SERVICE), "w") as handle:
        handle.write(stack or (line + "\naccount required pam_echo.so %s\n" % MARK))
    query = dict({"service": SERVICE, "user": user, "op": "account", "timeout": 30}, **query)
    t0 = time.monotonic()
    out = _pam_eval.evaluate([query], tree=tree)
    result = out["results"][0]
    result["wall"] = time.monotonic() - t0
    assert not [w for w in out["warnings"] if "not captured" in w], \
        "syslog lines cannot be checked: %s (nothing serves /dev/log)" % out["warnings"]
    assert result["status"] == "ok", result
    result["texts"] = [m["text"] for m in result["messages"]]
    return result


def logged(result, text):
    return any(text in line for line in result.get("log") or [])


# ---------------------------------------------------------------------------
# the service answers
# ---------------------------------------------------------------------------

def test_adoption_through_the_service(node, builds):
    stepd = node.stepd(41, UID)
    node.start()
    r = pam(node, builds["client"])
    assert r["rc_name"] == "PAM_SUCCESS" and r["env"].get("SLURM_JOB_ID") == "41"
    assert len(stepd.added) == 1 and stepd.added[0] not in (os.getpid(), node.procs[0].pid)
    assert MARK not in r["texts"]


def test_denial_reaches_the_conversation(node, builds):
    node.stepd(42, OTHER_UID)
    node.start()
    r = pam(node, builds["client"])
    assert r["rc_name"] == "PAM_PERM_DENIED"
    assert [(m["style"], m["text"]) for m in r["messages"]] == [("PAM_ERROR_MSG", MSG_NO_JOBS)]


def test_ignore_is_returned_as_ignore(node, builds):
    node.start()
    r = pam(node, builds["client"], user="root")
    assert r["texts"] == [MARK]           # PAM went on to the next module: PAM_IGNORE


def test_pam_syslog_lines_are_written_by_the_client(node, builds):
    """The lines the C module writes with pam_syslog(3) come from the PAM
    application's process (sshd's ident and pid), not from the service."""
    node.start()
    r = pam(node, builds["client"], ["service=another-service", "log_level=bogus"])
    assert r["texts"] == [MARK]                           # PAM_IGNORE
    assert logged(r, "pam_slurm_adopt(%s:account): Not adopting process since this is not an "
                     "allowed pam service" % SERVICE)
    assert logged(r, "pam_slurm_adopt(%s:account): unrecognized log level bogus" % SERVICE)
    assert not logged(r, "did not answer")               # no fallback: the service answered


def test_items_flags_and_environment_reach_the_service(node, builds):
    """What the C code encodes is what the Python side decodes."""
    seen = {}

    def script(conn):
        _t, payload, _fds = proto.recv_packet(conn, proto.CLIENT_TYPES)
        req = proto.decode_request(payload)
        seen.update(args=req.args, items=req.items, env=req.env, flags=req.flags,
                    budget=req.budget_ms)
        conn.send(proto.int_message(proto.MSG_RESULT, 0))
    with FakeService(node.socket, script):
        r = pam(node, builds["client"], ["Zürich=1"], rhost="192.0.2.7", tty="ssh",
                ruser="remote", flags=0x8000)
    assert r["rc_name"] == "PAM_SUCCESS"
    assert seen["args"] == ["service=%s" % SERVICE] + node.args + ["Zürich=1"]
    assert seen["items"] == {"user": "nobody", "service": SERVICE, "rhost": "192.0.2.7",
                             "tty": "ssh", "ruser": "remote"}
    assert seen["env"] == {"SLURM_CONF": node.conf} and seen["flags"] == 0x8000
    assert TOTAL_MS - SILENCE_MS - 1500 < seen["budget"] <= TOTAL_MS - SILENCE_MS - 1000


# ---------------------------------------------------------------------------
# the fallback child
# ---------------------------------------------------------------------------

def test_service_missing_the_child_adopts(node, builds):
    stepd = node.stepd(43, UID)
    r = pam(node, builds["client"])
    assert r["rc_name"] == "PAM_SUCCESS" and r["env"].get("SLURM_JOB_ID") == "43"
    assert len(stepd.added) == 1
    assert logged(r, "did not answer; running %s" % LAUNCHER)


def test_service_missing_the_child_denies_with_the_message(node, builds):
    node.stepd(44, OTHER_UID)
    r = pam(node, builds["client"])
    assert r["rc_name"] == "PAM_PERM_DENIED" and r["texts"] == [MSG_NO_JOBS]


def test_stopped_service_bounded_then_the_child(node, builds):
    stepd = node.stepd(45, UID)
    proc = node.start()
    proc.send_signal(signal.SIGSTOP)
    try:
        r = pam(node, builds["client"])
    finally:
        proc.send_signal(signal.SIGCONT)
    assert r["rc_name"] == "PAM_SUCCESS" and r["env"].get("SLURM_JOB_ID") == "45"
    assert SILENCE_MS / 1000.0 <= r["wall"] < SILENCE_MS / 1000.0 + 3
    time.sleep(1.0)                      # the resumed service drops the abandoned connection
    assert len(stepd.added) == 1


def test_service_stopped_after_go_no_child_configured_action(node, builds):
    """Once the client said "go" the service may be adopting it: no second
    opinion (the child) is asked; at the deadline the configured action."""
    stepd = node.stepd(46, UID)
    got = []

    def script(conn):
        proto.recv_packet(conn, proto.CLIENT_TYPES)
        conn.send(proto.pack(proto.MSG_PREPARE))
        got.append(proto.recv_packet(conn, proto.CLIENT_TYPES)[0])
        time.sleep(TOTAL_MS / 1000.0 + 2)                # stuck while "adopting"
    for action, rc in (("deny", "PAM_PERM_DENIED"), ("allow", "PAM_SUCCESS")):
        del got[:]
        with FakeService(node.socket, script):
            r = pam(node, builds["client"], ["action_generic_failure=%s" % action])
        assert got == [proto.MSG_GO]
        assert r["rc_name"] == rc and stepd.added == []
        assert TOTAL_MS / 1000.0 - 0.5 < r["wall"] < TOTAL_MS / 1000.0 + 2.5


def test_service_gone_after_go_no_child_configured_action_at_once(node, builds):
    """The service dies after "go" (it may have adopted us already): the
    configured action at once, and no child is asked."""
    stepd = node.stepd(55, UID)

    def script(conn):
        proto.recv_packet(conn, proto.CLIENT_TYPES)
        conn.send(proto.pack(proto.MSG_PREPARE))
        proto.recv_packet(conn, proto.CLIENT_TYPES)      # MSG_GO, then the connection closes
    with FakeService(node.socket, script):
        r = pam(node, builds["client"], ["action_generic_failure=deny"])
    assert r["rc_name"] == "PAM_PERM_DENIED" and r["wall"] < 3
    assert stepd.added == [], "a child was asked after the service may have adopted"


def test_no_python_at_all_applies_the_action_at_once(node, builds):
    for options, rc in (([], None), (["action_generic_failure=deny"], "PAM_PERM_DENIED"),
                        (["action_generic_failure=allow"], "PAM_SUCCESS"),
                        (["ACTION_GENERIC_FAILURE=DENYx", "action_generic_failure=bogus"],
                         "PAM_PERM_DENIED")):
        r = pam(node, builds["nopython"], options)
        if rc is None:
            assert r["texts"] == [MARK]  # default: ignore
        else:
            assert r["rc_name"] == rc and MARK not in r["texts"]
        assert r["wall"] < 3
        assert logged(r, "applying action_generic_failure")


def test_hanging_child_is_killed_at_the_deadline(node, builds):
    r = pam(node, builds["hang"], ["action_generic_failure=deny"])
    assert r["rc_name"] == "PAM_PERM_DENIED"
    assert TOTAL_MS / 1000.0 - 0.5 < r["wall"] < TOTAL_MS / 1000.0 + 3
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", builds["hang_script"]],
                          stdout=subprocess.PIPE, check=False).stdout == b""


def test_child_gets_a_clean_environment_and_no_inherited_descriptors(node, builds):
    """What the fallback child sees: only PATH, stdin the socketpair,
    stdout/stderr /dev/null, nothing else open: not even a descriptor the
    PAM application (pamtester here, sshd on a node) left inheritable."""
    report = os.path.join(node.dir, "report.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(report)
    sink.settimeout(20)
    spy = os.path.join(node.dir, "spy.py")
    with open(spy, "w") as handle:
        handle.write("import os, socket, sys\n"
                     "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                     "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                     "env = open('/proc/self/environ').read().split('\\0')[:-1]\n"
                     "s.sendto(repr((env, fds, sys.flags.isolated, sys.flags.no_site,"
                     " [os.readlink('/proc/self/fd/%%d' %% f) for f in (0, 1, 2)])).encode(), %r)\n"
                     % report)
    module = build(node.dir, "spy.so", builds["socket"], launcher=spy)
    pamd = "/etc/pam.d/saf-spy-%d" % os.getpid()
    with open(pamd, "w") as handle:
        handle.write("account required %s\n" % module)
    leak = os.open(os.devnull, os.O_RDONLY)           # inheritable, as sshd's are
    try:
        subprocess.run(["pamtester", os.path.basename(pamd), "nobody", "acct_mgmt"],
                       pass_fds=(leak,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30, check=False)
        data = sink.recv(65536).decode()
    finally:
        os.close(leak)
        os.unlink(pamd)
        sink.close()
    environ, fds, isolated, no_site, targets = eval(data)   # pylint: disable=eval-used
    assert environ == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]     # as exec'd
    assert (isolated, no_site) == (1, 1)
    assert targets[0].startswith("socket:") and targets[1] == targets[2] == "/dev/null"
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4, fds  # + the one listdir holds


# ---------------------------------------------------------------------------
# a misbehaving service: the client never trusts it blindly
# ---------------------------------------------------------------------------

class FakeService(object):
    """A root listener on the client's socket path running script(conn) for
    each connection (in a thread)."""

    def __init__(self, path, script, uid=None):
        self.path, self.script, self.uid = path, script, uid
        self.requests = 0
        self.errors = []

    def __enter__(self):
        if self.uid is not None:
            self.pid = self._foreign()
            return self
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _foreign(self):
        """A listener running as self.uid (a process of its own)."""
        directory = os.path.dirname(self.path)
        os.chmod(directory, 0o777)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(self.uid)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                sock.bind(self.path)
                sock.listen(8)
                os.write(wfd, b"r")
                conn, _addr = sock.accept()
                conn.settimeout(5)
                try:
                    if conn.recv(70000):
                        os.write(wfd, b"q")       # it got a request
                except OSError:
                    pass
                time.sleep(10)
            finally:
                os._exit(0)
        os.close(wfd)
        assert os.read(rfd, 1) == b"r"
        self.rfd = rfd
        return pid

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            self.requests += 1
            try:
                self.script(conn)
            except Exception as exc:   # pylint: disable=broad-except
                self.errors.append(exc)
            finally:
                conn.close()

    def __exit__(self, *exc):
        if self.uid is not None:
            os.set_blocking(self.rfd, False)
            try:
                self.requests = len(os.read(self.rfd, 10).replace(b"r", b""))
            except BlockingIOError:
                self.requests = 0
            os.close(self.rfd)
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.chmod(os.path.dirname(self.path), 0o755)
        else:
            self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        return False


def _malformed(packet, fds=()):
    """Sends packet, then a well-formed PAM_SUCCESS: a client that accepted
    the packet would return that success without any adoption; one that
    rejected it asks its child, which adopts."""
    def script(conn):
        proto.recv_packet(conn, proto.CLIENT_TYPES)
        if fds:
            conn.sendmsg([packet], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     struct.pack("=%di" % len(fds), *fds))])
        else:
            conn.send(packet)
        try:
            conn.send(proto.int_message(proto.MSG_RESULT, 0))
        except OSError:
            pass
        time.sleep(0.5)
    return script


def _hdr(msg_type, payload, version=1, flags=0, length=None):
    return struct.pack(">BBHI", version, msg_type, flags,
                       len(payload) if length is None else length) + payload


MALFORMED = {
    "garbage": _hdr(0, b"")[:5],
    "version 2": _hdr(proto.MSG_RESULT, b"\0\0\0\0", version=2),
    "flags": _hdr(proto.MSG_RESULT, b"\0\0\0\0", flags=1),
    "length mismatch": _hdr(proto.MSG_RESULT, b"\0\0\0\0", length=3),
    "unknown type": _hdr(99, b""),
    "client type": _hdr(proto.MSG_GO, b""),
    "result out of range": _hdr(proto.MSG_RESULT, struct.pack(">i", 99)),
    "negative result": _hdr(proto.MSG_RESULT, struct.pack(">i", -1)),
    "short result": _hdr(proto.MSG_RESULT, b"\0\0"),
    "conv too long": _hdr(proto.MSG_CONV, b"\x03" + b"x" * 9000),
    "conv bad style": _hdr(proto.MSG_CONV, b"\x01Password: "),
    "conv with NUL": _hdr(proto.MSG_CONV, b"\x03a\0b"),
    "putenv without =": _hdr(proto.MSG_PUTENV, b"SLURM_JOB_ID"),
    "putenv empty name": _hdr(proto.MSG_PUTENV, b"=x"),
    "setns without fd": _hdr(proto.MSG_SETNS, struct.pack(">i", CLONE_NEWNS)),
    "syslog bad severity": _hdr(proto.MSG_SYSLOG, b"\x09text"),
    "syslog empty": _hdr(proto.MSG_SYSLOG, b"\x03"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_message_from_the_service_falls_back_to_the_child(node, builds, name):
    stepd = node.stepd(47, UID)
    with FakeService(node.socket, _malformed(MALFORMED[name])) as fake:
        r = pam(node, builds["client"])
    assert fake.requests == 1
    assert r["rc_name"] == "PAM_SUCCESS" and r["env"] == {"SLURM_JOB_ID": "47"}
    assert len(stepd.added) == 1, "the fallback child did not adopt"
    assert "Password: " not in r["texts"] and r["wall"] < 5


def test_descriptor_on_a_message_that_is_not_setns_is_malformed(node, builds):
    stepd = node.stepd(48, UID)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        with FakeService(node.socket, _malformed(proto.int_message(proto.MSG_RESULT, 0),
                                                 [devnull])):
            r = pam(node, builds["client"])
    finally:
        os.close(devnull)
    assert r["rc_name"] == "PAM_SUCCESS" and len(stepd.added) == 1   # the child's answer


def test_refusal_falls_back_to_the_child_and_is_logged(node, builds):
    stepd = node.stepd(49, UID)
    with FakeService(node.socket, _malformed(proto.refused("busy: 512 requests pending"))):
        r = pam(node, builds["client"])
    assert r["rc_name"] == "PAM_SUCCESS" and len(stepd.added) == 1
    assert logged(r, "adoption service: busy: 512 requests pending")


def test_a_service_socket_not_owned_by_root_is_not_used(node, builds):
    stepd = node.stepd(50, UID)
    with FakeService(node.socket, None, uid=UID) as fake:
        r = pam(node, builds["client"])
    assert fake.requests == 0, "the client sent its request to a non-root listener"
    assert r["rc_name"] == "PAM_SUCCESS" and len(stepd.added) == 1


def test_oversized_item_applies_the_action_without_asking(node, builds):
    with FakeService(node.socket, _malformed(proto.int_message(proto.MSG_RESULT, 0))) as fake:
        r = pam(node, builds["client"], ["action_generic_failure=deny"], rhost="h" * 5000)
    assert fake.requests == 0 and r["rc_name"] == "PAM_PERM_DENIED"
    assert logged(r, "over the protocol's limits")


# ---------------------------------------------------------------------------
# setns is done by the client, with the type the service names
# ---------------------------------------------------------------------------

@pytest.fixture
def other_mount_ns():
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    end = time.monotonic() + 5
    while os.readlink("/proc/%d/ns/mnt" % proc.pid) == os.readlink("/proc/self/ns/mnt"):
        assert time.monotonic() < end
        time.sleep(0.02)
    fd = os.open("/proc/%d/ns/mnt" % proc.pid, os.O_RDONLY)
    yield fd
    os.close(fd)
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("version", [0x2600, 0x2D00])
def test_client_joins_the_namespace(node, builds, other_mount_ns, version):
    node.stepd(51, UID, version=version, namespaces=[(CLONE_NEWNS, other_mount_ns)])
    node.start()
    r = pam(node, builds["client"], ["action_adopt_failure=deny"])
    assert r["rc_name"] == "PAM_SUCCESS" and r["env"]["SLURM_JOB_ID"] == "51"


@pytest.mark.parametrize("what", ["not a namespace", "wrong type"])
def test_client_reports_a_failed_setns(node, builds, what):
    if what == "not a namespace":
        fd, nstype = os.open(os.devnull, os.O_RDONLY), CLONE_NEWNS
    else:
        fd, nstype = os.open("/proc/self/ns/net", os.O_RDONLY), CLONE_NEWNS
    try:
        node.stepd(52, UID, version=0x2D00, namespaces=[(nstype, fd)])
        node.start()
        r = pam(node, builds["client"], ["action_adopt_failure=deny"])
    finally:
        os.close(fd)
    assert r["rc_name"] == "PAM_PERM_DENIED"
    assert r["texts"][-1].startswith("Access denied by pam_slurm_adopt")


# ---------------------------------------------------------------------------
# memory safety
# ---------------------------------------------------------------------------

VALGRIND = "/usr/bin/valgrind"


@pytest.mark.skipif(not os.path.exists(VALGRIND), reason="valgrind is not installed")
@pytest.mark.parametrize("case", ["service", "child", "malformed", "empty with fd"])
def test_client_under_valgrind(node, builds, case):
    """pamtester (a real PAM application) with the client, under valgrind:
    no invalid access, no definite leak, no descriptor left open."""
    stepd = node.stepd(53, UID)
    pamd = "/etc/pam.d/saf-valgrind-%d" % os.getpid()
    with open(pamd, "w") as handle:
        handle.write("account required %s service=%s %s\n"
                     % (builds["client"], os.path.basename(pamd), " ".join(node.args)))
    fake = None
    try:
        if case == "service":
            node.start()
        elif case == "malformed":
            fake = FakeService(node.socket, _malformed(MALFORMED["conv too long"])).__enter__()
        elif case == "empty with fd":       # a zero-length packet carrying a descriptor
            devnull = os.open(os.devnull, os.O_RDONLY)
            fake = FakeService(node.socket, _malformed(b"", [devnull])).__enter__()
        proc = subprocess.run(
            [VALGRIND, "-q", "--error-exitcode=99", "--leak-check=full",
             "--errors-for-leak-kinds=definite", "--track-fds=yes",
             "pamtester", os.path.basename(pamd), "nobody", "acct_mgmt"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        if fake:
            fake.__exit__()
        if case == "empty with fd":
            os.close(devnull)
        os.unlink(pamd)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    assert len(stepd.added) == 1
    open_fds = [line for line in err.splitlines() if "Open file descriptor" in line
                and "inherited" not in line]
    assert not open_fds, err
