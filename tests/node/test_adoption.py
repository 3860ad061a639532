# SPDX-License-Identifier: GPL-3.0-or-later
"""The Python module on a real node: adoption, denial, callerid, cleanup."""

import pytest
from conftest import touch_job_cgroup

pytestmark = pytest.mark.node

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
UNKNOWN = "Access denied by pam_slurm_adopt: unable to determine source job"


def test_user_with_one_job_lands_in_its_extern_step(lab, jobs):
    r = lab.ssh("py", "alice", "echo SLURM_JOB_ID=$SLURM_JOB_ID")
    assert r.rc == 0, r.stderr
    assert r.job_id == jobs.alice and r.step == "extern"
    assert "SLURM_JOB_ID=%d" % jobs.alice in r.stdout


def test_user_without_job_is_denied_with_the_message(lab, jobs):
    r = lab.ssh("py", "carol")
    assert r.rc == 255 and NO_JOBS in r.message and r.job_id is None


def test_callerid_from_inside_each_job(lab, jobs):
    for job in (jobs.bob_old, jobs.bob_new):
        r = lab.ssh("py", "bob", via_job=job)
        assert r.rc == 0, r.stderr
        assert r.job_id == job


def test_two_jobs_from_outside_pick_the_newest(lab, jobs):
    touch_job_cgroup(lab, "bob", jobs.bob_new)
    r = lab.ssh("py", "bob")
    assert r.rc == 0 and r.job_id == jobs.bob_new


def test_action_unknown_deny_and_allow(lab, jobs):
    try:
        lab.set_account_options("py", "action_unknown=deny")
        r = lab.ssh("py", "bob")
        assert r.rc == 255 and UNKNOWN in r.message
        lab.set_account_options("py", "action_unknown=allow")
        r = lab.ssh("py", "bob")
        assert r.rc == 0 and r.job_id is None
    finally:
        lab.restore_account_line("py")


def test_logs_go_to_syslog_with_the_c_modules_ident(lab, jobs):
    mark = lab.syslog_mark()
    lab.ssh("py", "alice")
    lines = lab.wait_syslog(r"pam_slurm_adopt\[\d+\]: Process \d+ adopted into job %d" % jobs.alice,
                            mark)
    assert lines


def test_background_process_dies_when_the_job_is_cancelled(lab):
    job = lab.submit("dave")
    try:
        r = lab.start_background("py", "dave", "exec sleep 7777")
        assert r.rc == 0 and r.job_id == job
        assert r.pid and lab.wait_pids("dave", "sleep 7777")
    finally:
        lab.cancel(job)
    lab.wait_pids_gone("dave", "sleep 7777", timeout=30)


def test_root_over_ssh_is_left_to_the_rest_of_the_stack(lab, jobs):
    """root logs in over ssh for real, through both modules with the
    production flags: PAM_IGNORE before slurm.conf is read, so the rest of
    the account stack lets root in, not adopted into any job."""
    for kind in ("c", "py"):
        try:
            lab.set_account_options(kind, "action_adopt_failure=deny", "action_generic_failure=deny")
            mark = lab.syslog_mark()
            r = lab.ssh(kind, "root", "id -u")
        finally:
            lab.restore_account_line(kind)
        assert r.rc == 0 and r.stdout.strip() == "0", (kind, r.stderr)
        assert r.job_id is None
        assert lab.wait_syslog(r"pam_slurm_adopt\[\d+\]: Ignoring root user", mark), kind
