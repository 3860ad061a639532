# SPDX-License-Identifier: GPL-3.0-or-later
"""join_container for real, with SchedMD's C module as the oracle in the
same run.

The lab runs with the job container plugin of its Slurm for the length of
this file (Lab.slurm_conf_variant): job_container/tmpfs up to 25.05,
namespace/tmpfs from 25.11, job_container.conf in both. The job gets a
private /tmp. A marker the job writes there must be seen by the sessions
both modules adopt (over ssh, through a direct PAM call, and through the
service interface), which must be in the job's mount namespace; a session
outside the job must not see it.
"""

import os
import secrets

import pytest

import labctl
import pamdrv
from session_probe import LOGIN_BOUND, session, version
from test_service_differential import svc, through_service  # noqa: F401 (fixtures)  # pylint: disable=unused-import

pytestmark = pytest.mark.node

# Measured on the trixie (24.11) and sid (26.05) labs: the extern step fails
# to start ("[J.extern] error: _create_ns: Failed to make root private:
# Invalid argument" in slurmd.log; the job is requeued held), because a
# chroot directory is not a mount point. And even on a root that is one,
# setns(CLONE_NEWNS) puts the joining process at the root of the namespace's
# root mount, which is the machine's /, not the chroot: the job's /tmp would
# be <chroot>/tmp there. Only the host lab (22.05) can run these.
CHROOT_NO_CONTAINER = ("job_container/tmpfs and namespace/tmpfs need a lab whose root is the root "
                       "of its mount namespace; this lab is a chroot (lab/README.md)")


def container_settings(lab):
    """The job container plugin of the lab's Slurm: job_container/tmpfs up to
    25.05; from 25.11 the namespace plugins (JobContainerType is then only an
    alias that slurmctld warns about). job_container.conf in both."""
    key, plugin = (("NamespaceType", "namespace/tmpfs") if version(lab) >= (25, 11)
                   else ("JobContainerType", "job_container/tmpfs"))
    base = os.path.join(os.path.dirname(lab.spool_dir), "slurm-adopt-lab-jobns")
    return {"PrologFlags": "Contain", key: plugin}, {
        "job_container.conf": "# written by tests/node/test_join_container.py\n"
                              "AutoBasePath=true\nBasePath=%s\n" % base}


@pytest.fixture(scope="module")
def container_job(lab):
    """(job, marker name, marker text, the job's mount namespace)."""
    if lab.root != "/":
        pytest.skip(CHROOT_NO_CONTAINER)
    settings, files = container_settings(lab)
    marker = "slurm-adopt-marker-%s" % secrets.token_hex(4)
    text = secrets.token_hex(8)
    with lab.slurm_conf_variant(settings, files):
        job = lab.submit("alice", before="echo %s > /tmp/%s" % (text, marker))
        try:
            def in_job():
                p = lab.run(["srun", "--jobid=%d" % job, "--overlap", "-N1", "-n1", "--quiet",
                             "sh", "-c", "cat /tmp/%s; readlink /proc/self/ns/mnt" % marker],
                            user="alice", check=False)
                return p.stdout.split() if p.returncode == 0 else None
            seen = labctl._wait(in_job, 20, "the marker of job %d in its /tmp" % job, 0.5)
            assert seen[0] == text, seen
            yield job, marker, text, seen[1]
        finally:
            lab.cancel(job)


@pytest.mark.timeout(300)
def test_join_container_sees_the_jobs_tmp_as_the_c_module(lab, container_job):
    job, marker, text, job_ns = container_job
    own_ns = "mnt:[%d]" % os.stat("/proc/self/ns/mnt").st_ino
    assert job_ns != own_ns                          # the plugin made a namespace of its own
    read = "echo MARKER=$(cat /tmp/%s 2>/dev/null)" % marker
    got = {kind: session(lab, kind, "alice", read) for kind in ("plain", "c", "py")}
    outside = got.pop("plain")
    assert outside.rc == 0 and outside.job_id is None, outside
    assert outside.vars["MARKER"] == "" and outside.vars["MNTNS"] != job_ns, outside.vars
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r)
        assert r.seconds < LOGIN_BOUND, (kind, r.seconds)
        assert r.vars["MNTNS"] == job_ns, (kind, r.vars)
        assert r.vars["MARKER"] == text, (kind, r.vars, r.stderr)
    assert got["py"].vars["MARKER"] == got["c"].vars["MARKER"]


@pytest.mark.timeout(300)
def test_join_container_false_stays_outside(lab, container_job):
    """join_container=false (24.11.2+ spells it so; 22.05 compares the first
    19 characters, so the same word works there): adopted, but in sshd's own
    mount namespace, without the job's /tmp."""
    job, marker, _text, job_ns = container_job
    got = {}
    for kind in ("c", "py"):
        lab.set_account_options(kind, "join_container=false")
        try:
            got[kind] = session(lab, kind, "alice", "echo MARKER=$(cat /tmp/%s 2>/dev/null)"
                                % marker)
        finally:
            lab.restore_account_line(kind)
    for kind, r in got.items():
        assert r.rc == 0 and r.job_id == job, (kind, r)
        assert r.vars["MNTNS"] != job_ns and r.vars["MARKER"] == "", (kind, r.vars)


def pam_calls_with_marker(lab, marker):
    got = {}
    for kind in ("c", "py"):
        pamdrv.write_service(lab, kind)
        got[kind] = pamdrv.call(lab, kind, "alice", marker="/tmp/" + marker)
    return got


def check_marker_seen(got, job):
    for kind, call in got.items():
        assert call.rc_name == "PAM_SUCCESS" and call.job == job, (kind, call)
        assert call.marker, (kind, call)                 # the caller is in the job's /tmp
        assert call.elapsed < LOGIN_BOUND, (kind, call.elapsed)


@pytest.mark.timeout(300)
def test_join_container_direct_pam_call(lab, container_job):
    """The process that called PAM (sshd's, here the driver's) is the one
    that joins: it sees the marker right after pam_acct_mgmt()."""
    job, marker = container_job[:2]
    pamdrv.install(lab)
    try:
        got = pam_calls_with_marker(lab, marker)
    finally:
        pamdrv.remove_services(lab)
    check_marker_seen(got, job)


@pytest.mark.timeout(300)
def test_join_container_through_the_service(through_service, container_job):  # noqa: F811
    """Through the service interface: the service passes the namespace fd to
    the C client, which joins it inside the calling process."""
    job, marker = container_job[:2]
    check_marker_seen(pam_calls_with_marker(through_service, marker), job)
