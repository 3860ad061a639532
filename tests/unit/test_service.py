# SPDX-License-Identifier: GPL-3.0-or-later
"""The adoption service (slurm_adopt.service) as a real process, asked over its
real socket by a protocol peer written here, against fake slurmstepds.

The C client is tested through real libpam in test_service_client.py and
through real sshd in tests/node/test_service_node.py; this file covers the
service's side of every safety net: who may connect, which process is
adopted, the commitment before adopting, the pinned peer, heartbeats, the
time budget, the bounded pool, malformed and slow clients, shutdown."""

import errno
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from slurm_adopt import protocol as proto

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="the service serves root peers only: run as root"),
]

from slurm_adopt.service import ConfigCache
from test_service_support import (CLONE_NEWNS, MSG_NO_JOBS, OTHER_UID, UID, LAUNCHER,
                                  Client, Node, SlowUidStepd)


@pytest.fixture
def node():
    n = Node()
    yield n
    n.close()


# ---------------------------------------------------------------------------
# the decision, and what the client is asked to do
# ---------------------------------------------------------------------------

def test_adopts_the_connecting_process_and_sets_the_job_id(node):
    stepd = node.stepd(11, UID)
    node.start()
    out = node.ask()
    assert out.rc == 0
    assert stepd.added == [os.getpid()]
    assert out.env == {"SLURM_JOB_ID": "11"}
    assert [t for _when, t in out.events].count(proto.MSG_PREPARE) == 1


def test_the_process_adopted_is_the_peer_not_the_requester(node):
    """A request carries no pid: a forked process connects, and that process
    is adopted (SO_PEERCRED), whatever the test process is."""
    stepd = node.stepd(12, UID)
    node.start()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            out = node.ask()
            os.write(wfd, struct.pack("=i", out.rc))
        finally:
            os._exit(0)
    os.close(wfd)
    rc = struct.unpack("=i", os.read(rfd, 4))[0]
    os.waitpid(pid, 0)
    os.close(rfd)
    assert rc == 0 and stepd.added == [pid] and pid != os.getpid()


def test_denial_with_the_c_modules_message(node):
    node.stepd(13, OTHER_UID)
    node.start()
    out = node.ask()
    assert out.rc == 6
    assert out.messages == [(proto.PAM_ERROR_MSG, MSG_NO_JOBS)]
    assert proto.MSG_PREPARE not in [t for _when, t in out.events]


def test_root_is_ignored(node):
    node.start()
    assert node.ask(user="root").rc == 25


def test_pam_syslog_lines_are_handed_to_the_client(node):
    """The C module's pam_syslog lines are written by the client (sshd's
    ident and pid), each acknowledged so that the order of all lines holds."""
    node.start()
    out = node.ask(args=["service=another-service"])
    assert out.rc == 25
    assert out.syslog == [(6, "pam_slurm_adopt(sshd:account): Not adopting process since this "
                              "is not an allowed pam service")]


def test_first_heartbeat_before_the_request(node):
    """The service acknowledges a connection at accept time, so the client
    can tell a live service from a stuck one before sending anything."""
    node.start()
    client = node.client()
    try:
        client.sock.settimeout(5)
        msg_type, _payload, _fds = proto.recv_packet(client.sock, proto.SERVICE_TYPES)
        assert msg_type == proto.MSG_HEARTBEAT
    finally:
        client.close()


# ---------------------------------------------------------------------------
# who may connect, and when the service adopts
# ---------------------------------------------------------------------------

def test_socket_is_root_only(node):
    node.start()
    st = os.stat(node.socket)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)


def test_non_root_peer_is_refused(node):
    """Even when it can open the socket (mode widened on purpose), a non-root
    peer is refused and nothing is adopted."""
    stepd = node.stepd(14, UID)
    node.start()
    os.chmod(node.socket, 0o666)
    os.chmod(node.dir, 0o755)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(UID)
            client = node.client()      # refused at accept time, before any request
            out = client.run()
            os.write(wfd, (out.refused or "rc=%s" % out.rc).encode())
        except BaseException as exc:   # pylint: disable=broad-except
            os.write(wfd, ("error: %r" % exc).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    answer = os.read(rfd, 4096).decode()
    os.waitpid(pid, 0)
    os.close(rfd)
    assert "is not root" in answer
    assert stepd.added == []


def test_no_adoption_without_go(node):
    """A client that does not commit (it gave up: closed at MSG_PREPARE) is
    never adopted."""
    stepd = node.stepd(15, UID)
    node.start()
    out = node.ask(go=None)
    assert out.closed and out.rc is None
    time.sleep(0.5)
    assert stepd.added == []
    assert node.ask().rc == 0 and stepd.added == [os.getpid()]   # the service goes on


def test_silent_client_at_prepare_is_not_adopted(node):
    """A client that neither answers MSG_PREPARE nor closes: no adoption after
    the bounded wait; the flow treats it as an adoption failure."""
    stepd = node.stepd(16, UID)
    node.start()
    t0 = time.monotonic()
    out = node.ask(go=False, args=["action_adopt_failure=deny"])
    assert stepd.added == []
    assert out.rc == 6 and time.monotonic() - t0 < 5


def test_peer_that_exited_is_not_adopted(node):
    """The pin: process A connects and sends the request, hands the socket to
    its child B and exits while the service waits for a slow stepd. B answers
    MSG_PREPARE. A's pid must not be adopted (it could belong to another
    process by now)."""
    slow = SlowUidStepd(node.spool, 17, UID, 1.0)
    node.stepds.append(slow)
    node.start()
    rfd, wfd = os.pipe()
    a_pid = os.fork()
    if a_pid == 0:
        try:
            client = node.client()
            client.request(node.args, env=node.env)
            if os.fork() == 0:             # B: keeps the connection, answers
                try:
                    out = client.run()
                    os.write(wfd, struct.pack("=i", -1 if out.rc is None else out.rc))
                finally:
                    os._exit(0)
            time.sleep(0.2)
        finally:
            os._exit(0)                    # A exits; its pid is pinned by the service
    os.close(wfd)
    os.waitpid(a_pid, 0)
    data = os.read(rfd, 4)
    os.close(rfd)
    assert slow.added == [], "process %d was adopted after it exited" % a_pid
    assert struct.unpack("=i", data)[0] in (0, 25, -1)


def test_pidfd_open_through_the_raw_syscall(monkeypatch):
    """Python before 3.9 has no os.pidfd_open: the syscall through ctypes."""
    from slurm_adopt import service
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    child = subprocess.Popen(["sleep", "30"])
    try:
        fd = service.pidfd_open(child.pid)
        assert os.readlink("/proc/self/fd/%d" % fd) == "anon_inode:[pidfd]"
        os.close(fd)
    finally:
        child.kill()
        child.wait()
    with pytest.raises(OSError) as err:
        service.pidfd_open(child.pid)
    assert err.value.errno == errno.ESRCH


@pytest.mark.parametrize("pin", ["pidfd", "start time"])
def test_pin_detects_the_peer_exiting_while_its_socket_stays_open(monkeypatch, pin):
    """Peer.check_alive in-process, with a pidfd and with the /proc start time
    used where pidfd_open is missing (kernel < 5.3): process C creates the
    connection, a child of C keeps C's end open, C exits."""
    from slurm_adopt import service
    if pin == "start time":
        def no_pidfd(_pid):
            raise OSError(errno.ENOSYS, "pidfd_open not implemented")
        monkeypatch.setattr(service, "pidfd_open", no_pidfd)
    carrier, carrier_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    c_pid = os.fork()
    if c_pid == 0:
        try:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            carrier_c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        struct.pack("=i", theirs.fileno()))])
            if os.fork() == 0:           # keeps C's end open after C exits
                time.sleep(5)
                os._exit(0)
            carrier_c.recv(1)            # until the parent has pinned C
        finally:
            os._exit(0)
    _data, anc, _flags, _addr = carrier.recvmsg(1, socket.CMSG_SPACE(4))
    fd = struct.unpack("=i", anc[0][2][:4])[0]
    peer = service.Peer(socket.socket(fileno=fd))
    try:
        assert peer.pid == c_pid
        peer.pin()
        peer.check_alive()
        assert (peer.pidfd is None) == (pin == "start time")
        carrier.send(b"x")
        os.waitpid(c_pid, 0)
        with pytest.raises(service.PeerGone, match="exited"):
            peer.check_alive()
    finally:
        peer.close()
        carrier.close()
        carrier_c.close()


# ---------------------------------------------------------------------------
# time: heartbeats, budget, silent stepds
# ---------------------------------------------------------------------------

def test_heartbeats_while_a_stepd_is_silent(node):
    node.stepd(18, OTHER_UID, behaviour="stopped")
    stepd = node.stepd(19, UID)
    node.start()
    client = node.client()
    t0 = time.monotonic()
    try:
        out = client.request(node.args, env=node.env).run()
    finally:
        client.close()
    assert out.rc == 0 and stepd.added == [os.getpid()]
    times = [t0] + [when for when, t in out.events if t == proto.MSG_HEARTBEAT]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert time.monotonic() - t0 > 1.5, "the silent stepd did not slow the flow down"
    assert len(gaps) >= 3 and max(gaps) < 1.0, gaps


def test_budget_of_the_client_bounds_the_flow(node):
    node.stepd(20, UID, behaviour="stopped")
    node.start()
    client = node.client()
    t0 = time.monotonic()
    try:
        out = client.request(node.args, env=node.env, budget_ms=2500).run()
    finally:
        client.close()
    elapsed = time.monotonic() - t0
    assert out.rc == 25                  # generic failure (ignore): the only stepd is silent
    assert elapsed < 2.5 - 0.5, elapsed  # the result leaves a margin before the budget ends


def test_budget_too_small_is_refused(node):
    node.start()
    client = node.client()
    try:
        out = client.request(node.args, env=node.env, budget_ms=1200).run()
    finally:
        client.close()
    assert out.rc is None and "no time left" in out.refused


# ---------------------------------------------------------------------------
# malformed, oversized and slow clients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("packet", [
    b"garbage",
    struct.pack(">BBHI", 2, 16, 0, 0),
    struct.pack(">BBHI", 1, 17, 0, 0),
    proto.pack(proto.MSG_REQUEST, b"\x63\x00\x01x"),
    proto.pack(proto.MSG_REQUEST, struct.pack(">BH", proto.F_USER, 5000) + b"u" * 5000),
])
def test_malformed_request_is_refused_and_the_service_goes_on(node, packet):
    stepd = node.stepd(21, UID)
    node.start()
    client = node.client()
    try:
        client.sock.send(packet)
        out = client.run()
    finally:
        client.close()
    assert out.rc is None and out.refused
    assert stepd.added == []
    assert node.ask().rc == 0


def test_oversized_packet_is_refused(node):
    node.start()
    client = node.client()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        client.sock.send(struct.pack(">BBHI", 1, 16, 0, 100000) + b"x" * 100000)
        out = client.run()
    finally:
        client.close()
    assert out.refused and "truncated" in out.refused


def test_a_client_that_sends_nothing_is_dropped_and_blocks_no_one(node):
    node.stepd(22, UID)
    node.start("--workers", "1")
    silent = node.client()
    try:
        time.sleep(0.1)
        t0 = time.monotonic()
        out = node.ask()
        assert out.rc == 0 and time.monotonic() - t0 < 4
        leftover = silent.run(timeout=5)
        assert leftover.closed and leftover.rc is None
    finally:
        silent.close()


# ---------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------

def test_fifty_concurrent_requests_all_adopted(node):
    """50 at once, through 6 workers. (The fake stepd's listen backlog is 8;
    stepd.py's connect with a timeout fails with EAGAIN on a full backlog
    instead of waiting, so more workers than backlog would lose logins:
    reported for stepd.py. A real slurmstepd listens with a backlog of 32.)"""
    stepd = node.stepd(23, UID)
    node.start("--workers", "6")
    results = [None] * 50

    def one(index):
        results[index] = node.ask().rc
    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [0] * 50
    assert len(stepd.added) == 50


def test_pool_and_queue_are_bounded(node):
    """2 workers, at most 3 requests accepted: with a silent stepd every
    request takes 2 s; the fourth and fifth are refused at once ("busy"),
    the three accepted all get their answer."""
    node.stepd(24, OTHER_UID, behaviour="stopped")
    node.stepd(25, UID)
    node.start("--workers", "2", "--max-pending", "3")
    clients = [node.client() for _i in range(5)]
    outcomes = [None] * 5

    def one(index):
        outcomes[index] = clients[index].request(node.args, env=node.env).run()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for client in clients:
            client.close()
    refused = [o for o in outcomes if o.refused]
    served = [o for o in outcomes if o.rc is not None]
    assert len(refused) == 2 and all("busy" in o.refused for o in refused), [(o.rc, o.refused, o.closed, o.reset) for o in outcomes]
    assert len(served) == 3 and all(o.rc == 0 for o in served)


# ---------------------------------------------------------------------------
# namespaces: setns is carried out by the client
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0x2600, 0x2D00])
def test_namespace_fd_is_passed_to_the_client(node, version):
    ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        expect = os.fstat(ns)
        stepd = node.stepd(26, UID, version=version, namespaces=[(CLONE_NEWNS, ns)])
        node.start()
        out = node.ask()
    finally:
        os.close(ns)
    assert out.rc == 0 and stepd.added == [os.getpid()]
    assert out.setns == [((CLONE_NEWNS if version >= 0x2C00 else 0),
                          (expect.st_dev, expect.st_ino))]


def test_setns_failure_in_the_client_is_an_adoption_failure(node):
    ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        node.stepd(27, UID, namespaces=[(CLONE_NEWNS, ns)])
        node.start()
        allowed = node.ask(setns_errno=errno.EPERM)
        denied = node.ask(setns_errno=errno.EPERM, args=["action_adopt_failure=deny"])
    finally:
        os.close(ns)
    assert allowed.rc == 0                       # action_adopt_failure=allow (default)
    assert denied.rc == 6 and denied.messages[-1][1].startswith("Access denied by pam_slurm_adopt")


def settled_fd_count(pid, quiet=0.3, limit=3.0):
    """Open descriptors of pid once the count stays the same for `quiet` s
    (the service closes a connection just after sending its result)."""
    end = time.monotonic() + limit
    count, since = None, time.monotonic()
    while time.monotonic() < end:
        now = len(os.listdir("/proc/%d/fd" % pid))
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.05)
    return count


def test_service_closes_the_namespace_fds_it_received(node):
    ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    try:
        node.stepd(28, UID, namespaces=[(CLONE_NEWNS, ns)])
        proc = node.start()
        assert node.ask().rc == 0
        before = settled_fd_count(proc.pid)
        for _i in range(5):
            assert node.ask().rc == 0
        assert settled_fd_count(proc.pid) == before
    finally:
        os.close(ns)


# ---------------------------------------------------------------------------
# life cycle
# ---------------------------------------------------------------------------

def test_idle_exit_removes_the_socket(node):
    proc = node.start("--idle-exit", "1")
    assert proc.wait(10) == 0
    assert not os.path.exists(node.socket)


def test_sigterm_finishes_the_request_in_flight(node):
    node.stepd(29, OTHER_UID, behaviour="stopped")
    stepd = node.stepd(30, UID)
    proc = node.start()
    client = node.client()
    try:
        client.request(node.args, env=node.env)
        time.sleep(0.3)
        proc.terminate()
        out = client.run()
    finally:
        client.close()
    assert out.rc == 0 and stepd.added == [os.getpid()]
    assert proc.wait(30) == 0
    assert not os.path.exists(node.socket)


def test_a_second_service_does_not_steal_a_live_socket(node):
    node.start()
    second = node.start(wait=False)
    assert second.wait(10) != 0
    assert "another service listens" in node.service_log()
    assert node.ask().rc == 6                 # the first one still serves (no jobs: denied)


def test_refuses_to_run_as_non_root(node):
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "setpriv", "--reuid=65534",
                           "--regid=65534", "--clear-groups", sys.executable, "-I", "-S", LAUNCHER,
                           "serve", "--socket", node.socket], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=20, check=False)
    assert proc.returncode != 0 and b"must run as root" in proc.stderr


# ---------------------------------------------------------------------------
# the fallback child: the same code, one request on fd 0
# ---------------------------------------------------------------------------

def run_child(node, **kwargs):
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(["env", "-i", "PATH=/usr/bin:/bin", sys.executable, "-I", "-S",
                             LAUNCHER, "child"], stdin=child, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    child.close()
    client = Client.__new__(Client)
    client.sock = parent
    try:
        out = client.request(node.args + kwargs.pop("args", []), env=node.env,
                             **kwargs).run()
    finally:
        parent.close()
    assert proc.wait(10) == 0, proc.stderr.read()
    return out


def test_child_adopts_the_creator_of_the_socketpair(node):
    stepd = node.stepd(31, UID)
    out = run_child(node)
    assert out.rc == 0 and stepd.added == [os.getpid()] and out.env == {"SLURM_JOB_ID": "31"}


def test_child_denies_with_the_message(node):
    node.stepd(32, OTHER_UID)
    out = run_child(node)
    assert out.rc == 6 and out.messages == [(proto.PAM_ERROR_MSG, MSG_NO_JOBS)]


# ---------------------------------------------------------------------------
# the parsed slurm.conf: reused only while every file is the same
# ---------------------------------------------------------------------------

def _write(path, text, age=10):
    with open(path, "w") as handle:
        handle.write(text)
    past = time.time() - age
    os.utime(path, (past, past))


def test_config_cache_reuses_only_identical_files(tmp_path):
    from slurm_adopt import service
    from slurm_adopt.slurmconf import SlurmConfig
    conf, inc = str(tmp_path / "slurm.conf"), str(tmp_path / "nodes.conf")
    _write(inc, "NodeName=n1\n")
    _write(conf, "SlurmdSpoolDir=/a\nInclude nodes.conf\n")
    cache = service.ConfigCache(SlurmConfig.load)
    cache.RACY_SECONDS = 0.2                # ctime cannot be set back: wait past it instead
    time.sleep(0.3)
    first = cache.load(conf)
    again = cache.load(conf)
    assert (cache.hits, cache.misses) == (1, 1)
    assert again is not first and again.spool_dir("n1") == "/a"
    # same size, same mtime, other content (an edit within one timestamp tick): ctime differs
    st = os.stat(inc)
    _write(inc, "NodeName=n2\n")
    os.utime(inc, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(0.3)                         # past the racy window, so the next parse is kept
    assert cache.load(conf).nodename_for_host("n2") == "n2" and cache.misses == 2
    # replaced by rename: another inode
    _write(conf + ".new", "SlurmdSpoolDir=/b\nInclude nodes.conf\n", age=10)
    os.rename(conf + ".new", conf)
    time.sleep(0.3)
    assert cache.load(conf).spool_dir("n1") == "/b" and cache.misses == 3
    assert cache.load(conf).spool_dir("n1") == "/b" and cache.hits == 2


def test_config_cache_keeps_nothing_just_written(tmp_path):
    from slurm_adopt import service
    from slurm_adopt.slurmconf import SlurmConfig
    conf = str(tmp_path / "slurm.conf")
    _write(conf, "SlurmdSpoolDir=/a\n", age=0)
    cache = service.ConfigCache(SlurmConfig.load)
    cache.load(conf)
    cache.load(conf)
    assert (cache.hits, cache.misses) == (0, 2)


def test_config_cache_rereads_cgroup_conf(tmp_path):
    from slurm_adopt import service
    from slurm_adopt.slurmconf import SlurmConfig
    conf, cgroup = str(tmp_path / "slurm.conf"), str(tmp_path / "cgroup.conf")
    _write(conf, "SlurmdSpoolDir=/a\n")
    _write(cgroup, "CgroupPlugin=cgroup/v1\n")
    cache = service.ConfigCache(SlurmConfig.load)
    cache.RACY_SECONDS = 0.2
    time.sleep(0.3)
    assert cache.load(conf).cgroup.get("cgroupplugin") == "cgroup/v1"
    _write(cgroup, "CgroupPlugin=cgroup/v2\n")
    assert cache.load(conf).cgroup.get("cgroupplugin") == "cgroup/v2" and cache.hits == 1


def test_service_follows_an_edited_slurm_conf_at_once(node):
    node.stepd(40, UID)
    with open(node.conf, "r") as handle:
        text = handle.read()
    node.start()
    time.sleep(ConfigCache.RACY_SECONDS + 0.1)  # old enough to be kept
    assert node.ask().rc == 0
    assert node.ask().rc == 0                 # served from the cache
    empty = os.path.join(node.dir, "empty-spool")
    os.mkdir(empty)
    with open(node.conf, "w") as handle:      # same second, another spool: no jobs there
        handle.write(text.replace(node.spool, empty))
    assert node.ask().rc == 6


# ---------------------------------------------------------------------------
# the ssh connection of the client's process
# ---------------------------------------------------------------------------

@pytest.fixture
def tcp_connection():
    """A connected TCP socket of this process; its listener lives in another
    process (a listening socket of ours would make the /proc tables decide)."""
    server = subprocess.Popen([sys.executable, "-c",
                               "import socket, sys, time\n"
                               "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
                               "print(s.getsockname()[1], flush=True)\n"
                               "c, _ = s.accept(); time.sleep(30)\n"],
                              stdout=subprocess.PIPE)
    port = int(server.stdout.readline())
    conn = socket.create_connection(("127.0.0.1", port))
    yield conn
    conn.close()
    server.kill()
    server.wait()


def _context_for_this_process():
    from slurm_adopt import service
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer = service.Peer(theirs)
    peer.pin()
    return service.ServiceContext(peer, proto.decode_request(
        proto.encode_request([], {"user": "nobody"}, None, 1000))), mine


def test_netinfo_borrows_the_clients_socket(tcp_connection, monkeypatch):
    """The ssh connection of the client's process, found without the /proc
    tables (pidfd_getfd + getsockname/getpeername): the same answer."""
    from slurm_adopt import callerid
    expected = callerid.own_netinfo(os.getpid())          # the tables
    ctx, mine = _context_for_this_process()
    try:
        def no_tables(*_args):
            raise AssertionError("the /proc tables were read")
        monkeypatch.setattr(callerid, "own_netinfo", no_tables)
        found = ctx.netinfo()
    finally:
        ctx.peer.close()
        mine.close()
    assert (found.ip_src, found.port_src, found.ip_dst, found.port_dst, found.af) == (
        expected.ip_src, expected.port_src, expected.ip_dst, expected.port_dst, expected.af)
    # src: the remote end (the ssh client), dst: this process's end (sshd's)
    assert found.port_src == tcp_connection.getpeername()[1]
    assert found.port_dst == tcp_connection.getsockname()[1]


def test_netinfo_falls_back_to_the_tables(tcp_connection, monkeypatch):
    """Where borrowing is impossible (kernel < 5.6): the /proc tables."""
    from slurm_adopt import callerid, service

    def no_getfd(_pidfd, _fd):
        raise OSError(errno.ENOSYS, "pidfd_getfd not implemented")
    monkeypatch.setattr(service, "pidfd_getfd", no_getfd)
    ctx, mine = _context_for_this_process()
    try:
        found = ctx.netinfo()
    finally:
        ctx.peer.close()
        mine.close()
    assert found.port_src == tcp_connection.getpeername()[1]
    assert found.port_dst == tcp_connection.getsockname()[1]
