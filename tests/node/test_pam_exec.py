# SPDX-License-Identifier: GPL-3.0-or-later
"""The pam_exec fallback on a real node: the helper adopts its parent, the
sshd process; denials reach the user through pam_exec's `stdout` option."""

import pytest

pytestmark = pytest.mark.node

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"


def exec_line(lab, *options):
    # pam_exec passes the PAM environment and the PAM items, not sshd's own
    # environment: a non-default slurm.conf is named on the command line
    # (/usr/bin/env appends it after the items, where the helper reads it).
    # python3 -I -S: nothing from PYTHON* variables, no site (issue 9, item 6).
    return " ".join(["account required pam_exec.so stdout /usr/bin/env",
                     "SLURM_CONF=%s" % lab.slurm_conf, "/usr/bin/python3", "-I", "-S",
                     lab.module_path, "pam-exec", "service=%s" % lab.pam_services["py"]]
                    + list(options))


def test_pam_exec_adopts_the_sshd_process(lab, jobs):
    with lab.pam_account("py", exec_line(lab)):
        r = lab.ssh("py", "alice")
    assert r.rc == 0, r.stderr
    assert r.job_id == jobs.alice and r.step == "extern"


def test_pam_exec_denies_without_a_job(lab, jobs):
    with lab.pam_account("py", exec_line(lab)):
        r = lab.ssh("py", "carol")
    assert r.rc == 255 and NO_JOBS in r.stderr and r.job_id is None


def test_pam_exec_callerid_from_inside_a_job(lab, jobs):
    with lab.pam_account("py", exec_line(lab)):
        r = lab.ssh("py", "bob", via_job=jobs.bob_old)
    assert r.rc == 0 and r.job_id == jobs.bob_old


def test_pam_exec_other_service_is_success_not_ignore(lab, jobs):
    """pam_exec cannot return PAM_IGNORE: "ignore" exits 0 (docs/differences.md)."""
    with lab.pam_account("py", exec_line(lab, "service=another-service")):
        r = lab.ssh("py", "carol")
    assert r.rc == 0 and r.job_id is None


def test_pam_exec_without_slurm_conf_on_the_command_line(lab, jobs):
    """Without SLURM_CONF on the command line the helper reads the default
    slurm.conf. Where the lab's is elsewhere (the host lab) it cannot work and
    action_generic_failure=deny denies (exit 1), never allows; where it is the
    default path (the chroot labs) it adopts."""
    line = " ".join(["account required pam_exec.so stdout /usr/bin/python3 -I -S",
                     lab.module_path, "pam-exec", "service=%s" % lab.pam_services["py"],
                     "action_generic_failure=deny"])
    with lab.pam_account("py", line):
        r = lab.ssh("py", "alice")
    if lab.slurm_conf == "/etc/slurm/slurm.conf":
        assert r.rc == 0 and r.job_id == jobs.alice
    else:
        assert r.rc == 255 and r.job_id is None
