"""Faults on a real node: each gives the configured action within a few
seconds and a log line that says what happened. The C module is not run
here where it hangs (stopped slurmstepd) or kills sshd (broken slurm.conf);
see docs/differences.md."""

import os
import signal
import socket
import subprocess
import time

import pytest

pytestmark = pytest.mark.node

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
UNKNOWN = "Access denied by pam_slurm_adopt: unable to determine source job"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lab_up(lab):
    """Restart whatever a fault test stopped (the lab's up.sh is idempotent)."""
    script = os.path.join(REPO, "lab", lab.name, "up.sh")
    # The test session holds the lab lock (conftest); up.sh must not wait for it.
    env = dict(os.environ, TRIXIE_LAB_LOCKED="1")
    subprocess.run(["bash", script], check=True, stdout=subprocess.DEVNULL, timeout=300, env=env)


def pids(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], stdout=subprocess.PIPE, text=True,
                         check=False).stdout
    return [int(p) for p in out.split()]


def timed_ssh(lab, *args, **kw):
    start = time.monotonic()
    result = lab.ssh(*args, **kw)
    return result, time.monotonic() - start


def test_stopped_slurmstepd_applies_generic_failure_quickly(lab, jobs):
    stepds = pids(r"slurmstepd: \[%d\.extern\]" % jobs.alice)
    assert stepds, "no slurmstepd for job %d" % jobs.alice
    lab.set_account_options("py", "action_generic_failure=deny")
    mark = lab.syslog_mark()
    for pid in stepds:
        os.kill(pid, signal.SIGSTOP)
    try:
        result, elapsed = timed_ssh(lab, "py", "alice")
    finally:
        for pid in stepds:
            os.kill(pid, signal.SIGCONT)
        lab.restore_account_line("py")
    assert result.rc == 255 and elapsed < 10
    assert lab.wait_syslog(r"did not answer within", mark)
    assert lab.ssh("py", "alice").job_id == jobs.alice          # recovered


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


@pytest.mark.parametrize("action,allowed", [("deny", False), ("allow", True)])
def test_broken_slurm_conf_applies_generic_failure(lab, jobs, action, allowed):
    path = lab.host_path(lab.slurm_conf)
    with open(path) as handle:
        original = handle.read()
    lab.set_account_options("py", "action_generic_failure=" + action)
    mark = lab.syslog_mark()
    try:
        with open(path, "a") as handle:
            handle.write("\nthis line is not key=value\n")
        result, elapsed = timed_ssh(lab, "py", "alice")
    finally:
        with open(path, "w") as handle:
            handle.write(original)
        lab.restore_account_line("py")
    assert result.ok == allowed and result.job_id is None and elapsed < 10
    assert lab.wait_syslog(r"cannot parse .*action_generic_failure=%s" % action, mark)


def _login_with_daemon_stopped(lab, pattern):
    """Stop this lab's daemons whose command line matches pattern, log in as
    bob (two jobs: the callerid RPC is needed) through our module with
    action_unknown=deny, then restore the adopt line and bring the lab up."""
    lab.set_account_options("py", "action_unknown=deny")
    daemons = [p for p in pids(pattern) if _root_of(p) == lab.root]
    try:
        for pid in daemons:
            os.kill(pid, signal.SIGTERM)
        _wait_gone(daemons)
        return timed_ssh(lab, "py", "bob")
    finally:
        lab.restore_account_line("py")
        lab_up(lab)


def test_slurmd_stopped_falls_back_to_action_unknown(lab, jobs):
    result, elapsed = _login_with_daemon_stopped(lab, r"slurmd( |$)")
    assert result.rc == 255 and UNKNOWN in result.message and elapsed < 10


def test_munge_down_falls_back_to_action_unknown(lab, jobs):
    mark = lab.syslog_mark()
    result, elapsed = _login_with_daemon_stopped(lab, r"munged")
    assert result.rc == 255 and UNKNOWN in result.message and elapsed < 10
    assert lab.wait_syslog(r"munge", mark)


def _root_of(pid):
    """The root directory of pid, or None for a process in another mount
    namespace (a podman container's daemons: their /proc/PID/root also
    resolves to "/" from here, and they are not this lab's)."""
    try:
        if os.readlink("/proc/%d/ns/mnt" % pid) != os.readlink("/proc/self/ns/mnt"):
            # a chroot lab shares our mount namespace; a container does not
            return None
        return os.path.realpath("/proc/%d/root" % pid)
    except OSError:
        return None


def _wait_gone(pid_list, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(os.path.exists("/proc/%d" % p) for p in pid_list):
            return
        time.sleep(0.1)
    raise AssertionError("processes %s did not exit" % pid_list)
