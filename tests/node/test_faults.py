# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults on a real node: each gives the configured action within a bounded
time and a log line of the module that says what happened, and each test
shows that the fault was really there (the daemon stopped, the stepd
stopped) and was handled (the fallback path, not a healthy lab's answer).
The C module is not run where it hangs (stopped slurmstepd) or kills sshd
(broken slurm.conf); see docs/differences.md. Only the lab's own daemons
are stopped (by their pid files), and exactly those are started again."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import pamdrv

pytestmark = pytest.mark.node

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
UNKNOWN = "Access denied by pam_slurm_adopt: unable to determine source job"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lab_up(lab):
    """Start again what a fault test stopped: the lab's up.sh starts only
    what is not running (it is idempotent)."""
    script = os.path.join(REPO, "lab", lab.name, "up.sh")
    # The test session holds the lab lock (conftest); up.sh must not wait for it.
    env = dict(os.environ, TRIXIE_LAB_LOCKED="1", SID_LAB_LOCKED="1")
    subprocess.run(["bash", script], check=True, stdout=subprocess.DEVNULL, timeout=300, env=env)


def pidfile(lab, daemon):
    """Host path of the pid file of one of the lab's own daemons."""
    if lab.root == "/":
        return {"slurmd": "/var/lib/slurm-adopt-lab/host/run/slurmd.pid",
                "munged": "/run/munge/munged.pid"}[daemon]
    return lab.host_path({"slurmd": "/run/slurmd.pid", "munged": "/run/munge/munged.pid"}[daemon])


def lab_daemon(lab, daemon):
    """The pid of the lab's daemon, checked to run in the lab's root."""
    with open(pidfile(lab, daemon)) as handle:
        pid = int(handle.read().strip())
    assert os.path.realpath("/proc/%d/root" % pid) == lab.root, "pid %d is not %s's" % (pid, lab.name)
    with open("/proc/%d/comm" % pid) as handle:
        assert handle.read().strip() == daemon
    return pid


def timed_ssh(lab, *args, **kw):
    start = time.monotonic()
    result = lab.ssh(*args, **kw)
    return result, time.monotonic() - start


# A fault may add at most FAULT_SLACK seconds to a login, against the same
# login on the healthy lab just before (the machine may be loaded: CI runs the
# node stage beside molecule). The faults here end at once or after one 2 s
# stepd timeout; without the fixes they add 12 s or more (the module's budget
# for uid queries, ten stopped stepds asked in turn) or hang.
FAULT_SLACK = 8


def healthy_ssh_seconds(lab, kind, user, **kw):
    """The time of a login on the healthy lab (its result checked by the caller's
    fault login, not here)."""
    return timed_ssh(lab, kind, user, **kw)[1]


def stepd_pids(lab, job):
    out = subprocess.run(["pgrep", "-f", r"slurmstepd: \[%d\.extern\]" % job],
                         stdout=subprocess.PIPE, text=True, check=False).stdout
    pids = [int(p) for p in out.split() if os.path.realpath("/proc/%s/root" % p) == lab.root]
    assert pids, "no slurmstepd for job %d" % job
    return pids


@pytest.mark.timeout(120)
@pytest.mark.parametrize("action", ["allow", "deny"])
def test_stopped_slurmstepd_applies_generic_failure_quickly(lab, jobs, action):
    """The only job's stepd is stopped: not "no jobs" (the user may have a
    job there) but action_generic_failure, within a few seconds."""
    stepds = stepd_pids(lab, jobs.alice)
    lab.set_account_options("py", "action_generic_failure=" + action)
    healthy = healthy_ssh_seconds(lab, "py", "alice")
    mark = lab.syslog_mark()
    for pid in stepds:
        os.kill(pid, signal.SIGSTOP)
    try:
        _wait_state(stepds, "T")                            # really stopped
        result, elapsed = timed_ssh(lab, "py", "alice")
    finally:
        for pid in stepds:
            os.kill(pid, signal.SIGCONT)
        lab.restore_account_line("py")
    assert elapsed < healthy + FAULT_SLACK, (elapsed, healthy)
    assert result.ok == (action == "allow") and result.job_id is None
    assert NO_JOBS not in result.message
    assert lab.wait_syslog(r"did not answer within", mark)
    assert lab.wait_syslog(r"could not be trusted; applying action_generic_failure=%s" % action, mark)
    assert lab.ssh("py", "alice").job_id == jobs.alice          # recovered


@pytest.mark.timeout(300)
def test_ten_silent_stepds_of_another_user(lab, jobs):
    """Item 2 on a real node: ten stopped stepds of dave's jobs cost about
    one stepd timeout, and alice is adopted with deny/deny."""
    dave_jobs = [lab.submit("dave") for _i in range(10)]
    stopped = [pid for job in dave_jobs for pid in stepd_pids(lab, job)]
    lab.set_account_options("py", "action_adopt_failure=deny", "action_generic_failure=deny")
    healthy = healthy_ssh_seconds(lab, "py", "alice")
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        result, elapsed = timed_ssh(lab, "py", "alice")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        lab.restore_account_line("py")
        lab.cancel(dave_jobs)
    assert result.rc == 0 and result.job_id == jobs.alice, result.stderr
    assert elapsed < healthy + FAULT_SLACK, (elapsed, healthy)   # one 2 s stepd timeout, not ten


def test_stale_socket_in_the_spool_dir_is_ignored(lab, jobs):
    stale = lab.host_path(os.path.join(lab.spool_dir, "%s_999999.4294967292" % lab.nodename))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(stale)
    sock.close()
    try:
        assert NO_JOBS in lab.ssh("py", "carol").message
        assert lab.ssh("py", "alice").job_id == jobs.alice
    finally:
        os.unlink(stale)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("action,allowed", [("deny", False), ("allow", True)])
def test_broken_slurm_conf_applies_generic_failure(lab, jobs, action, allowed):
    path = lab.host_path(lab.slurm_conf)
    with open(path) as handle:
        original = handle.read()
    lab.set_account_options("py", "action_generic_failure=" + action)
    healthy = healthy_ssh_seconds(lab, "py", "alice")
    mark = lab.syslog_mark()
    try:
        with open(path, "a") as handle:
            handle.write("\nthis line is not key=value\n")
        result, elapsed = timed_ssh(lab, "py", "alice")
    finally:
        with open(path, "w") as handle:
            handle.write(original)
        lab.restore_account_line("py")
    assert result.ok == allowed and result.job_id is None, result
    assert elapsed < healthy + FAULT_SLACK, (elapsed, healthy)
    assert lab.wait_syslog(r"cannot parse .*action_generic_failure=%s" % action, mark)


@pytest.mark.timeout(120)
def test_non_ascii_slurm_conf_under_a_process_without_lang(lab, jobs):
    """Item 1 on a real node: "# Zürich" in slurm.conf, and the PAM caller
    (as sshd started by systemd) has no LANG: both modules adopt."""
    path = lab.host_path(lab.slurm_conf)
    with open(path, "rb") as handle:
        original = handle.read()
    pamdrv.install(lab)
    try:
        with open(path, "ab") as handle:
            handle.write("\n# Z\u00fcrich \u2013 Rechenzentrum\n".encode())
        got = {}
        for kind in ("c", "py"):
            pamdrv.write_service(lab, kind, ["action_generic_failure=deny"])
            got[kind] = pamdrv.call(lab, kind, "alice", no_lang=True)
    finally:
        with open(path, "wb") as handle:
            handle.write(original)
        pamdrv.remove_services(lab)
    for kind in ("c", "py"):
        assert got[kind].rc_name == "PAM_SUCCESS" and got[kind].job == jobs.alice, got[kind]
    assert "LANG" not in got["py"].env


def _login_with_daemon_stopped(lab, daemon, via_job=None, options=("action_unknown=deny",)):
    """Stop the lab's own daemon (by its pid file), check it is gone, log in
    as bob (two jobs: the callerid RPC is needed), start it again."""
    lab.set_account_options("py", *options)
    healthy = healthy_ssh_seconds(lab, "py", "bob", via_job=via_job)
    pid = lab_daemon(lab, daemon)
    try:
        os.kill(pid, signal.SIGTERM)
        _wait_gone([pid])
        if daemon == "slurmd":
            with socket.socket() as probe:                 # nothing answers the RPC any more
                probe.settimeout(2)
                assert probe.connect_ex(("127.0.0.1", lab.slurmd_port)) != 0
        result, elapsed = timed_ssh(lab, "py", "bob", via_job=via_job)
        assert elapsed < healthy + FAULT_SLACK, (elapsed, healthy)
        return result
    finally:
        lab.restore_account_line("py")
        lab_up(lab)
        assert lab_daemon(lab, daemon) != pid


@pytest.mark.timeout(400)
def test_slurmd_stopped_falls_back_to_action_unknown(lab, jobs):
    """Over ssh from outside: with the lab's slurmd stopped, action_unknown=deny."""
    mark = lab.syslog_mark()
    result = _login_with_daemon_stopped(lab, "slurmd")
    assert result.rc == 255 and UNKNOWN in result.message
    assert lab.wait_syslog(r"as %s: unable to determine source job" % lab.user("bob"), mark)


def _from_inside_the_older_job_with(lab, jobs, daemon):
    """A connection from inside bob's older job lands in that job while the
    RPC works (checked first); with the daemon stopped after the client
    connected, the login must fall back to action_unknown (allow here: let
    in, not adopted). Returns the syslog lines of the broken login."""
    pamdrv.write_service(lab, "py", ["action_unknown=allow"])
    try:
        healthy = pamdrv.call(lab, "py", "bob", via_job=jobs.bob_old)
        assert healthy.job == jobs.bob_old, healthy
        state = {}

        def stop():
            state["pid"] = lab_daemon(lab, daemon)
            os.kill(state["pid"], signal.SIGTERM)
            _wait_gone([state["pid"]])
        try:
            broken = pamdrv.call(lab, "py", "bob", via_job=jobs.bob_old, before_pam=stop)
        finally:
            if "pid" in state:
                lab_up(lab)
                assert lab_daemon(lab, daemon) != state["pid"]
    finally:
        pamdrv.remove_services(lab)
    assert broken.rc_name == "PAM_SUCCESS" and broken.job is None, broken
    assert "SLURM_JOB_ID" not in broken.env
    assert broken.elapsed < healthy.elapsed + FAULT_SLACK, (broken.elapsed, healthy.elapsed)
    return broken.syslog


@pytest.mark.timeout(400)
def test_slurmd_stopped_during_a_login_from_inside_a_job(lab, jobs):
    lines = _from_inside_the_older_job_with(lab, jobs, "slurmd")
    assert any("unable to determine source job" in line for line in lines), lines


@pytest.mark.timeout(400)
def test_munge_stopped_during_a_login_from_inside_a_job(lab, jobs):
    lines = _from_inside_the_older_job_with(lab, jobs, "munged")
    assert any("cannot ask the remote slurmd: munged is not reachable" in line
               for line in lines), lines


@pytest.mark.timeout(400)
def test_munge_down_falls_back_to_action_unknown(lab, jobs):
    mark = lab.syslog_mark()
    result = _login_with_daemon_stopped(lab, "munged")
    assert result.rc == 255 and UNKNOWN in result.message
    assert lab.wait_syslog(r"as %s: cannot ask the remote slurmd: munged is not reachable"
                           % lab.user("bob"), mark)


@pytest.mark.timeout(120)
def test_twenty_concurrent_logins(lab, jobs):
    """All adopted, none lost."""
    results = [None] * 20

    def login(i):
        results[i] = lab.ssh("py", "alice", "echo $SLURM_JOB_ID", timeout=60)
    threads = [threading.Thread(target=login, args=(i,)) for i in range(20)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert all(r is not None for r in results)
    assert [r.rc for r in results] == [0] * 20, [r.stderr for r in results if r.rc]
    assert [r.job_id for r in results] == [jobs.alice] * 20
    assert time.monotonic() - start < 60


DRIP = r"""
import socket, struct, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(struct.pack(">I", 400))
        for _ in range(400):
            c.sendall(b"\0"); time.sleep(0.5)
    except OSError:
        pass
    c.close()
"""


@pytest.fixture
def dribbling_netns(lab):
    """A network namespace of our own, joined to this one by a veth pair
    (10.231.7.1 here, 10.231.7.2 there), with a peer on the lab's
    SlurmdPort there that answers with a plausible length and then one byte
    every 0.5 s."""
    name = "adopt-drip-%d" % os.getpid()
    host_if, ns_if = "adrh%d" % (os.getpid() % 10000), "adrn%d" % (os.getpid() % 10000)

    def run(*cmd):
        subprocess.run(cmd, check=True, timeout=30)
    run("ip", "netns", "add", name)
    peer = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", name)
        run("ip", "addr", "add", "10.231.7.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", name, "ip", "addr", "add", "10.231.7.2/30", "dev", ns_if)
        run("ip", "netns", "exec", name, "ip", "link", "set", ns_if, "up")
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        peer = subprocess.Popen(["ip", "netns", "exec", name, "python3", "-c", DRIP, "10.231.7.2",
                                 str(lab.slurmd_port)], stdout=subprocess.PIPE, text=True)
        assert peer.stdout.readline().strip() == "ready"
        yield name
    finally:
        if peer is not None:
            peer.kill()
            peer.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False, timeout=30)
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


@pytest.mark.timeout(120)
def test_dribbling_peer_on_the_slurmd_port(lab, jobs, dribbling_netns):
    """Item 3 on a real node: bob (two jobs) logs in from an address whose
    SlurmdPort answers one byte every 0.5 s. The RPC ends at its deadline
    (MessageTimeout, 10 s in the labs), then action_unknown (newest) adopts."""
    pamdrv.install(lab)
    pamdrv.write_service(lab, "py", ["action_adopt_failure=deny"])
    try:
        port = pamdrv.free_port()
        driver = subprocess.Popen(lab.command([pamdrv.INSIDE, "-l", "10.231.7.1:%d" % port,
                                               pamdrv.SERVICES["py"], lab.user("bob")]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert driver.stdout.readline().strip() == "listening"
        start = time.monotonic()
        client = subprocess.Popen(["ip", "netns", "exec", dribbling_netns, "python3", "-c",
                                   pamdrv.CLIENT, "10.231.7.1", str(port)])
        out, err = driver.communicate(timeout=60)
        elapsed = time.monotonic() - start
        client.wait(30)
    finally:
        pamdrv.remove_services(lab)
    assert "rc 0" in out.splitlines(), (out, err)
    # the RPC waited for its deadline (10 s), then the login went on: not cut
    # by sshd's LoginGraceTime, nor by the driver's 60 s
    assert 9 < elapsed < 10 + 2 * FAULT_SLACK, elapsed


def _wait_gone(pid_list, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(_alive(p) for p in pid_list):
            return
        time.sleep(0.1)
    raise AssertionError("processes %s did not exit" % pid_list)


def _state(pid):
    """The state letter of /proc/PID/stat (after the command name, which may
    hold spaces and parentheses)."""
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def _wait_state(pids, state, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(_state(pid) == state for pid in pids):
            return
        time.sleep(0.05)
    raise AssertionError("%s not in state %s: %s" % (pids, state, [_state(p) for p in pids]))


def _alive(pid):
    try:
        return _state(pid) not in ("Z", "X")
    except OSError:
        return False
