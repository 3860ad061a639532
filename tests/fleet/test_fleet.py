# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet scenario, end to end, on the podman lab (lab/fleet): one
controller, two compute nodes, one login node, real munge, Slurm 22.05, sshd
and PAM.  The tests run in order and build on each other, like an admin's
day: a rollout stopped by the lockout pre-flight, a rollout rolled back by
the fresh-ssh probe, the real rollout, logins, drift, repair, removal.

Run with lab/fleet/test.sh (fresh lab, these tests, teardown).
"""

import json
import os
import re

import pytest

from fleetlab import COMPUTE, diff_fingerprints

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
pytestmark = pytest.mark.fleet


def rollout_touched(output, host):
    """Did the rollout play (not the Slurm prerequisites) run a task on host?"""
    rollout = output.split("PLAY [Roll pam_slurm_adopt out", 1)[-1]
    return ("[%s]" % host) in rollout or ("[%s ->" % host) in rollout


def job_of(cgroup_text):
    match = re.search(r"freezer:.*/job_(\d+)/step_extern", cgroup_text)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------
# 1. the lockout pre-flight stops the canary, nothing changes
# ---------------------------------------------------------------------------

def test_preflight_catches_admin_group_lockout(fleet, baseline):
    """The access rules name the wrong admin group ('wheel' instead of the
    site's 'fleetwheel'): pamtester on the staged stack refuses fleetadmin,
    the canary stops before anything is live, node2 is never touched."""
    res = fleet.playbook("site", "-e", json.dumps(
        {"fleet_access_rules": ["+:root:ALL", "+:(wheel):ALL", "-:ALL:ALL"]}))
    assert res.rc != 0, res.log
    assert "LOCKOUT PRE-FLIGHT failed on saf-node1" in res.out, res.log
    assert "fleetadmin would be DENIED by the new stack" in res.out, res.log
    assert not rollout_touched(res.out, "saf-node2"), res.log
    for node in COMPUTE:
        assert diff_fingerprints(baseline[node], fleet.fingerprint(node)) == [], node
    # and users are not affected: a user without a job still gets in (stock stack)
    assert fleet.ssh("login", "fleetbob", "node1").ok


# ---------------------------------------------------------------------------
# 2. a failure after the change rolls the host back
# ---------------------------------------------------------------------------

def test_failed_fresh_login_rolls_the_host_back(fleet, baseline):
    """Admins may only log in from the management network 192.0.2.0/24.
    The pre-flight (pamtester from 192.0.2.10) passes, but the real fresh
    ssh login as fleetadmin from this machine is refused by the new stack:
    the canary restores its previous files and fails clearly."""
    res = fleet.playbook("site", "-e", json.dumps(
        {"fleet_access_rules": ["+:root:ALL", "+:(fleetwheel):192.0.2.0/24", "-:ALL:ALL"]}))
    assert res.rc != 0, res.log
    assert "pre-flight passed on saf-node1" in res.out, res.log
    assert "saf-node1 ROLLED BACK" in res.out, res.log
    assert "fresh ssh login as fleetadmin" in res.out, res.log
    assert not rollout_touched(res.out, "saf-node2"), res.log
    for node in COMPUTE:
        assert diff_fingerprints(baseline[node], fleet.fingerprint(node)) == [], node
    # back to the stock stack: logind runs, a user without a job gets in,
    # and the drift check left with the rollback (it drains nothing)
    assert fleet.ssh("login", "fleetbob", "node1").ok
    assert not fleet.exec("node1", "test -e /usr/sbin/slurm-adopt-healthcheck").ok
    assert "DRAIN" not in fleet.node_state("node1")[0]


# ---------------------------------------------------------------------------
# 3. the rollout
# ---------------------------------------------------------------------------

def test_rollout(fleet):
    res = fleet.playbook("site")
    assert res.rc == 0, res.log
    for host in ("saf-node1", "saf-node2"):
        assert "pre-flight passed on %s" % host in res.out
        assert "%s: adopted" % host in res.out
    assert "saf-login: left alone (login/controller)" in res.out
    assert "saf-ctl: left alone (login/controller)" in res.out


def test_second_run_changes_nothing(fleet):
    res = fleet.playbook("site")
    assert res.rc == 0, res.log
    recap = res.out.split("PLAY RECAP", 1)[1]
    changed = re.findall(r"^(\S+)\s*:.*changed=(\d+)", recap, re.M)
    assert len(changed) == 5 and all(n == "0" for _h, n in changed), recap


def test_user_with_a_job_is_adopted_into_its_extern_step(fleet):
    fleet.cancel_all()
    job = fleet.submit("fleetalice", "-w node1")
    res = fleet.ssh("login", "fleetalice", "node1", "cat /proc/self/cgroup")
    assert res.ok, res
    assert job_of(res.out) == job, res.out


def test_callerid_across_nodes_picks_the_calling_job(fleet):
    """fleetbob has an old job on node1, a two-node job on node1+node2 and
    the newest job on node1.  An ssh from inside the two-node job on node2
    to node1 lands in that job (node1's module asks node2's slurmd which
    job owns the connection), not in the newest one."""
    fleet.cancel_all()
    old = fleet.submit("fleetbob", "-w node1")
    span = fleet.submit("fleetbob", "-N 2 -w node1,node2")
    newest = fleet.submit("fleetbob", "-w node1")
    # outside any job (from the login node): the newest job
    res = fleet.ssh("login", "fleetbob", "node1", "cat /proc/self/cgroup")
    assert res.ok and job_of(res.out) == newest, res
    # from inside the spanning job on node2: that job
    res = fleet.exec("ctl", "srun --jobid=%d -w node2 -N1 -n1 --overlap ssh -o LogLevel=INFO node1 "
                            "cat /proc/self/cgroup" % span, user="fleetbob")
    assert res.ok, res
    assert job_of(res.out) == span, (res.out, old, span, newest)


def test_user_without_a_job_is_denied(fleet):
    fleet.cancel_all()
    res = fleet.ssh("login", "fleetbob", "node2")
    assert res.rc == 255, res
    assert NO_JOBS in res.err, res


def test_admin_gets_in_without_a_job(fleet):
    res = fleet.ssh("login", "fleetadmin", "node1", "cat /proc/self/cgroup; id -un")
    assert res.ok, res
    assert job_of(res.out) is None and "fleetadmin" in res.out


def test_login_node_is_never_locked(fleet):
    res = fleet.ssh("node1", "fleetadmin", "login", "id -un")
    assert res.ok
    res = fleet.ssh("ctl", "fleetbob", "login", "id -un")   # no job anywhere
    assert res.ok and "fleetbob" in res.out, res
    assert "pam_slurm_adopt" not in fleet.must("login", "cat /etc/pam.d/sshd")


def test_healthcheck_green(fleet):
    report = os.path.join(fleet.log_dir, "health-green.json")
    res = fleet.playbook("healthcheck", "-e", "fleet_health_json=%s" % report)
    assert res.rc == 0, res.log
    assert "overall: OK (2 green" in res.out, res.out[-3000:]
    with open(report) as handle:
        data = json.load(handle)
    assert {n["host"] for n in data["nodes"]} == {"saf-node1", "saf-node2"}
    for node in data["nodes"]:
        checks = {c["check"]: c["status"] for c in node["checks"]}
        assert set(checks.values()) == {"ok"}, node
        assert {"module_file", "account_stack", "pam_systemd", "logind", "slurm_config", "slurmd",
                "stepd_sockets", "explain", "pam_stack_info", "pam_python_loads"} <= set(checks)
    # the same checks, as the shipped testinfra suite over ssh
    res = fleet.testinfra("node1", "node2")
    assert res.ok and "18 passed" in res.out, res.out[-3000:]


# ---------------------------------------------------------------------------
# 4. drift: pam_systemd comes back, health turns red, the node drains
# ---------------------------------------------------------------------------

def run_drift_hook(fleet, node):
    """What slurmd's HealthCheckProgram does on the node."""
    return fleet.exec(node, "/usr/sbin/slurm-adopt-healthcheck", env={"SLURMD_NODENAME": node})


def test_drift_turns_health_red_and_drains_the_node(fleet):
    # a tool wipes our pam-auth-update profile and re-enables pam_systemd
    fleet.must("node1", "rm -f /usr/share/pam-configs/slurm-adopt && "
                        "DEBIAN_FRONTEND=noninteractive pam-auth-update --enable systemd && "
                        "grep -q '^session.*pam_systemd' /etc/pam.d/common-session")
    report = os.path.join(fleet.log_dir, "health-red.json")
    res = fleet.playbook("healthcheck", "-e", "fleet_health_json=%s" % report)
    assert res.rc == 2, res.log
    assert "saf-node1 RED" in res.out and "pam_systemd reachable" in res.out, res.out[-3000:]
    with open(report) as handle:
        data = json.load(handle)
    status = {n["host"]: n["status"] for n in data["nodes"]}
    assert status == {"saf-node1": "fail", "saf-node2": "ok"}, status
    res = fleet.testinfra("node1")
    assert res.rc == 1 and "1 failed, 8 passed" in res.out, res.out[-3000:]
    assert re.search(r"^FAILED \S*tests/testinfra/test_slurm_adopt_node.py::test_pam_systemd_unreachable",
                     res.out, re.M), res.out[-3000:]

    # slurmd runs the same hook every HealthCheckInterval (60 s in the lab):
    # it may have drained the node already ("drained": nothing left to do)
    out = run_drift_hook(fleet, "node1").out
    assert re.search(r"^action: (drain|drained)$", out, re.M), out
    state, reason = fleet.node_state("node1")
    assert "DRAIN" in state and reason.startswith("slurm-adopt: pam_systemd"), (state, reason)


def test_drift_hook_never_resumes_a_node_someone_else_drained(fleet):
    fleet.must("ctl", "scontrol update NodeName=node2 State=DRAIN Reason='disk replacement'")
    try:
        out = run_drift_hook(fleet, "node2").out     # node2 is healthy
        assert "action: none" in out, out
        state, reason = fleet.node_state("node2")
        assert "DRAIN" in state and reason == "disk replacement", (state, reason)
    finally:
        fleet.must("ctl", "scontrol update NodeName=node2 State=RESUME")


def test_rerunning_site_repairs_and_the_hook_resumes(fleet):
    res = fleet.playbook("site")
    assert res.rc == 0, res.log
    res = fleet.playbook("healthcheck", "-e", "fleet_health_json=%s"
                         % os.path.join(fleet.log_dir, "health-again.json"))
    assert res.rc == 0 and "overall: OK (2 green" in res.out, res.out[-3000:]
    out = run_drift_hook(fleet, "node1").out
    if "action: none" in out:
        # slurmd's periodic HealthCheckProgram run was faster: it must be our
        # hook that resumed the node
        assert "resume node node1" in fleet.must("node1", "journalctl -q -t slurm-adopt-check"), out
    else:
        assert "action: resume" in out, out
    state, reason = fleet.node_state("node1")
    assert "DRAIN" not in state, (state, reason)
    # adoption works again on the repaired node
    job = fleet.submit("fleetalice", "-w node1")
    res = fleet.ssh("login", "fleetalice", "node1", "cat /proc/self/cgroup")
    assert res.ok and job_of(res.out) == job, res
    fleet.cancel_all()


# ---------------------------------------------------------------------------
# 5. removal restores every file
# ---------------------------------------------------------------------------

def test_remove_restores_every_file(fleet, baseline):
    res = fleet.playbook("remove")
    assert res.rc == 0, res.log
    for node in COMPUTE:
        assert diff_fingerprints(baseline[node], fleet.fingerprint(node)) == [], node
        assert not fleet.exec(node, "test -e /usr/lib/slurm-adopt/pam_slurm_adopt.py").ok
    # users without a job get in again
    assert fleet.ssh("login", "fleetbob", "node1").ok
