# SPDX-License-Identifier: GPL-3.0-or-later
"""The service interface on the real labs (Slurm 22.05 host, 24.11 trixie,
26.05 sid): a real sshd loads the C client (pam_slurm_adopt_client.so), which
asks the adoption service, or runs the fallback child. Set up next to each
lab's own sshds by benchmarks/service_lab.py (kinds `svc` and `svcchild`).

Each safety net is shown working by breaking what it guards: the service
stopped, the service frozen (SIGSTOP), a non-root process at the socket."""

import os
import signal
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import service_lab  # noqa: E402  pylint: disable=wrong-import-position
from session_probe import LOGIN_BOUND  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"


@pytest.fixture(scope="module")
def svc(lab):
    with service_lab.ServiceLab(lab) as s:
        yield s


def adopted(result, job):
    return result.rc == 0 and result.job_id == job and result.step == "extern"


def test_adoption_into_the_extern_step_with_the_job_id(svc, lab, jobs):
    r = lab.ssh("svc", "alice", "echo JOB=$SLURM_JOB_ID")
    assert adopted(r, jobs.alice), (r.rc, r.stderr, r.job_cgroup)
    assert "JOB=%d" % jobs.alice in r.stdout


def test_denial_with_the_c_modules_message(svc, lab, jobs):
    r = lab.ssh("svc", "carol")
    assert r.rc == 255 and NO_JOBS in r.stderr and r.job_id is None


@pytest.mark.parametrize("via", ["bob_old", "bob_new"])
def test_callerid_picks_the_job_the_connection_comes_from(svc, lab, jobs, via):
    r = lab.ssh("svc", "bob", via_job=getattr(jobs, via))
    assert adopted(r, getattr(jobs, via)), (r.rc, r.stderr, r.job_cgroup)


def test_scancel_kills_the_adopted_session(svc, lab, jobs):
    job = lab.submit("dave")
    try:
        bg = lab.start_background("svc", "dave", "sleep 7771")
        assert bg.rc == 0 and bg.job_id == job
        assert lab.wait_pids("dave", "sleep 7771")
        lab.cancel(job)
        lab.wait_pids_gone("dave", "sleep 7771")
    finally:
        lab.cancel(job)


def test_the_fallback_kind_adopts_too(svc, lab, jobs):
    """svcchild's client has no service to ask: every login is the child's."""
    mark = lab.syslog_mark()
    r = lab.ssh("svcchild", "alice", "echo JOB=$SLURM_JOB_ID")
    assert adopted(r, jobs.alice) and "JOB=%d" % jobs.alice in r.stdout
    assert lab.wait_syslog(r"did not answer; running .*slurm_adopt_service\.py", mark)


def test_service_stopped_the_child_answers(svc, lab, jobs):
    svc.stop_service()
    try:
        mark = lab.syslog_mark()
        r = lab.ssh("svc", "alice", "echo JOB=$SLURM_JOB_ID")
        assert adopted(r, jobs.alice) and "JOB=%d" % jobs.alice in r.stdout
        denied = lab.ssh("svc", "carol")
        assert denied.rc == 255 and NO_JOBS in denied.stderr
        assert lab.wait_syslog(r"adoption service .* did not answer", mark)
    finally:
        svc.start_service()


def test_service_frozen_login_is_bounded_then_the_child(svc, lab, jobs):
    os.kill(svc.service_pid(), signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = lab.ssh("svc", "alice", "echo JOB=$SLURM_JOB_ID")
        elapsed = time.monotonic() - t0
    finally:
        os.kill(svc.service_pid(), signal.SIGCONT)
    assert adopted(r, jobs.alice) and "JOB=%d" % jobs.alice in r.stdout
    assert 3.0 <= elapsed < 3.0 + LOGIN_BOUND, elapsed    # the 3 s silence limit, then the child
    time.sleep(1)
    assert svc.service_pid(), "the service died after SIGCONT"
    assert adopted(lab.ssh("svc", "alice"), jobs.alice)    # and serves again


def test_only_root_can_reach_the_service(svc, lab, jobs):
    probe = ("import socket\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
             "s.connect(%r)\n" % service_lab.SOCKET)
    p = lab.run(["python3", "-c", probe], user="alice", check=False)
    assert p.returncode != 0 and "PermissionError" in p.stderr
    st = os.stat(svc.host(service_lab.SOCKET))
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 0)


def test_fifty_concurrent_logins_all_adopted(svc, lab, jobs):
    results = [None] * 50

    def one(index):
        results[index] = lab.ssh("svc", "alice", "echo JOB=$SLURM_JOB_ID", timeout=120)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    elapsed = time.monotonic() - t0
    lost = [(i, r.rc, r.stderr[-300:]) for i, r in enumerate(results)
            if r is None or not adopted(r, jobs.alice) or "JOB=%d" % jobs.alice not in r.stdout]
    assert not lost, lost
    print("50 concurrent logins through the service on %s: %.1f s" % (lab.name, elapsed))
