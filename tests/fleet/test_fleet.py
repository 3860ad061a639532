# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet scenario on the podman lab (lab/fleet): one controller, two
compute nodes, one login node, real munge, Slurm 22.05, sshd and PAM, one
slurm.conf shared by all four (a volume, as over NFS), and the inventory a
site writes: its own group names and batch sizes in group_vars/all, and the
user Ansible connects as (fleetops, a sudoer, not an admin) only in an ssh
config.

node1 runs the service interface (lab/fleet/host_vars/saf-node1.yml: the
adoption service under the container's systemd and the C PAM client built
on the node), node2 pam_python: the tests of what users see run on both.

Each test brings the nodes into the state it needs (fixtures `pristine` and
`rolled_out` of fleetlab.py), so any one of them runs alone; the order below
only saves playbook runs.  slurmd never runs HealthCheckProgram by itself
here (HealthCheckInterval=0): the tests run the hook when they mean to.

Run with lab/fleet/test.sh (fresh lab, these tests, teardown).
"""

import json
import os
import re
import shutil
import time

import pytest

from fleetlab import (ANSIBLE_USER, CLIENT, COMPUTE, SERVICE_FILES, SERVICE_NODE, diff_fingerprints,
                      snapshot_collection, write_inventory)

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
FALLBACK = "adoption service /run/slurm-adopt/adopt.sock did not answer; running"
CHECK = "python3 /usr/lib/slurm-adopt/slurm_adopt_check.py check"
pytestmark = pytest.mark.fleet


def rollout_touched(output, host):
    """Did the rollout play (not the Slurm prerequisites) run a task on host?"""
    rollout = output.split("PLAY [Roll pam_slurm_adopt out", 1)[-1].split("PLAY [Login and controller", 1)[0]
    return ("[%s]" % host) in rollout or ("[%s ->" % host) in rollout


def job_of(cgroup_text):
    match = re.search(r"freezer:.*/job_(\d+)/step_extern", cgroup_text)
    return int(match.group(1)) if match else None


def run_drift_hook(fleet, node):
    """What slurmd's HealthCheckProgram does on the node."""
    return fleet.exec(node, "/usr/sbin/slurm-adopt-healthcheck", env={"SLURMD_NODENAME": node})


def summary(output):
    return dict(re.findall(r'"msg": "(saf-\S+): ([^"]*)"', output.split("PLAY [Summary]", 1)[-1]))


# ---------------------------------------------------------------------------
# 1. the inventory checks of play 1 (nothing touches a node)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["renamed setting", "compute and login", "no compute group",
                                  "settings differ per host"])
def test_inventory_guards_stop_the_run_before_anything(fleet, tmp_path, case):
    args, host_vars, extra = [], {}, []
    if case == "renamed setting":
        args = ["-e", "fleet_canary=1"]
        want = "fleet_canary -> slurm_adopt_canary"
    elif case == "compute and login":
        extra = [("hpc_compute", "saf-login")]
        want = "in the compute group 'hpc_compute' AND in the login/controller groups"
    elif case == "no compute group":
        args = ["-e", "slurm_adopt_compute_group=compute"]
        want = "The compute group 'compute' (slurm_adopt_compute_group) has no hosts"
    else:
        host_vars = {"saf-node2": {"slurm_adopt_batch": 5}}
        want = "The play-level settings"
    inventory = write_inventory(str(tmp_path), host_vars, extra)
    res = fleet.playbook("site", *args, inventory=inventory)
    assert res.rc != 0, res.log
    assert want in res.out, res.out[-3000:]
    assert "PLAY [Slurm prerequisites" not in res.out or "no hosts matched" in res.out.split(
        "PLAY [Slurm prerequisites", 1)[1].split("TASK", 1)[0], res.log


# ---------------------------------------------------------------------------
# 2. check mode on fresh nodes: no pamtester, no pam_python yet
# ---------------------------------------------------------------------------

def test_check_mode_on_fresh_nodes_shows_the_change_and_changes_nothing(fleet, pristine):
    """A careful site's first command.  The nodes have no pamtester (a stock
    node has none) and, for this test, no pam_python.so either: the pre-flight
    asks the node's libpam itself and must pass; the PAM diffs are shown;
    nothing changes."""
    conf = fleet.slurm_conf()
    hidden = []
    try:
        for node in COMPUTE:
            so = fleet.must(node, "dpkg -L libpam-python | grep 'pam_python.so$'").strip()
            fleet.must(node, "mv %s %s.hidden-by-test && ! command -v pamtester" % (so, so))
            hidden.append((node, so))
        res = fleet.playbook("site", "--check", "--diff")
    finally:
        for node, so in hidden:
            fleet.must(node, "mv %s.hidden-by-test %s" % (so, so))
    assert res.rc == 0, res.log
    # the pre-flight's own verdict (the diffs of the files the check mode would
    # install show their source, which contains the words DENIED and LET IN)
    assert "LOCKOUT PRE-FLIGHT failed on" not in res.out, res.log
    for host in ("saf-node1", "saf-node2"):
        assert "pre-flight passed on %s" % host in res.out, res.log
        assert summary(res.out)[host] == "would be adopted (check mode)", res.log
    assert re.search(r"^\+account\s+sufficient\s+pam_python\.so", res.out, re.M), res.log
    assert "+PrologFlags=" in res.out or "PrologFlags=Contain" in res.out, res.log   # the slurm.conf diff
    assert fleet.slurm_conf() == conf
    for node in COMPUTE:
        assert diff_fingerprints(pristine[node], fleet.fingerprint(node)) == [], node


# ---------------------------------------------------------------------------
# 3. the pre-flight stops a lockout; a failed fresh login rolls back
# ---------------------------------------------------------------------------

def test_preflight_stops_a_lockout_and_a_failed_login_rolls_back(fleet, pristine, tmp_path):
    """One run, both nodes in one batch, each with a mistake of its own
    (host_vars), and max_fail_percentage 100 so that both are tried:
      node1: the access rules name the wrong admin group ('wheel' instead of
             the site's 'fleetwheel'): the node's libpam refuses fleetadmin on
             the staged stack, node1 stops before anything is live;
      node2: admins may log in only from 192.0.2.0/24: the pre-flight (from
             192.0.2.10) passes, the real fresh ssh login as fleetadmin from
             this machine is refused, node2 is rolled back."""
    rules = ["+:root:ALL", "+:%s:ALL" % ANSIBLE_USER]
    inventory = write_inventory(str(tmp_path), {
        "saf-node1": {"slurm_adopt_access_rules": rules + ["+:(wheel):ALL", "-:ALL:ALL"]},
        "saf-node2": {"slurm_adopt_access_rules": rules + ["+:(fleetwheel):192.0.2.0/24", "-:ALL:ALL"]}})
    res = fleet.playbook("site", "-e", "slurm_adopt_max_fail_percentage=100", inventory=inventory)
    assert res.rc != 0, res.log
    assert "LOCKOUT PRE-FLIGHT failed on saf-node1" in res.out, res.log
    assert "fleetadmin would be DENIED by the new stack" in res.out, res.log
    assert "pre-flight passed on saf-node2" in res.out, res.log
    assert "saf-node2 ROLLED BACK" in res.out and "fresh ssh login as fleetadmin" in res.out, res.log
    # (every compute node failed, so Ansible ends the run before the summary)
    for node in COMPUTE:
        # the new release waits, inactive, in the module directory (site.yml
        # installs it before the pre-flight, which tests it), and on the
        # service node its client and units (the pre-flight loads that
        # client); nothing else differs
        staged = ("/usr/lib/slurm-adopt",) + (tuple(SERVICE_FILES) if node == SERVICE_NODE else ())
        changed = [d for d in diff_fingerprints(pristine[node], fleet.fingerprint(node))
                   if not d.startswith(staged)]
        assert changed == [], node
        assert "pam_slurm_adopt" not in fleet.exec(node, "grep -rh pam_slurm_adopt /etc/pam.d").out, node
        assert "DRAIN" not in fleet.node_state(node)[0]
    # users are not affected: a user without a job still gets in (stock stack)
    assert fleet.ssh("login", "fleetbob", "node2").ok


# ---------------------------------------------------------------------------
# 4. the rollout, as the lab's inventory sets it up
# ---------------------------------------------------------------------------

def test_rollout(fleet, pristine):
    fleet.stock_slurm_conf()       # (an earlier site.yml run, even a failed one, set the prerequisites)
    before = {node: fleet.daemon_pid(node, "slurmd") for node in COMPUTE}
    ctld = fleet.daemon_pid("ctl", "slurmctld")
    res = fleet.playbook("site")
    assert res.rc == 0, res.log
    result = summary(res.out)
    assert result == {"saf-node1": "adopted", "saf-node2": "adopted",
                      "saf-ctl": "left alone (login/controller)", "saf-login": "left alone (login/controller)"}, result
    for host in ("saf-node1", "saf-node2"):
        assert "pre-flight passed on %s" % host in res.out, res.log
        assert "a fresh ssh login as %s works after the change" % ANSIBLE_USER in res.out, res.log
    # group_vars/all asked for one batch of both nodes (the default is 1, then 25%)
    assert "in batches of 2, then 1" in res.out, res.log
    # facts once for the batch, by the first task of the full run (the play gathers none: the fast path needs none)
    rollout = res.out.split("PLAY [Roll pam_slurm_adopt out", 1)[1].split("PLAY [Login", 1)[0]
    assert len(re.findall(r"^TASK \[hpc\.slurm_adopt\.slurm_adopt : Facts of the node for the full run", rollout, re.M)) == 1, \
        res.log
    assert "TASK [Gathering Facts]" not in rollout, res.log
    # the first run has no record to go by: the full run, which records (the next test takes the fast path)
    for host in ("saf-node1", "saf-node2"):
        assert "%s: full run: no record of a successful full run" % host in res.out, res.log
    # the shared slurm.conf was edited once, and still every slurmd was restarted
    # for the new TaskPlugin, and slurmctld too
    conf = fleet.slurm_conf()
    assert re.search(r"^TaskPlugin=task/affinity,task/cgroup$", conf, re.M), conf
    assert re.search(r"^PrologFlags=Contain$", conf, re.M), conf
    assert re.search(r"^HealthCheckProgram=/usr/sbin/slurm-adopt-healthcheck$", conf, re.M), conf
    assert re.search(r"^HealthCheckInterval=0$", conf, re.M), conf
    for node in COMPUTE:
        assert fleet.daemon_pid(node, "slurmd") != before[node], node
        assert "task/cgroup" in fleet.must(node, "scontrol show config | grep ^TaskPlugin")
    assert fleet.daemon_pid("ctl", "slurmctld") != ctld
    # the user Ansible connects as (named only in the ssh config) is protected
    # like root: a new ssh login as it works, and it is in the admin bypass
    for node in COMPUTE:
        assert re.search(r"^\+:%s:ALL$" % ANSIBLE_USER,
                         fleet.must(node, "cat /etc/security/slurm-adopt-access.conf"), re.M)
    assert all(fleet.is_rolled_out(node) for node in COMPUTE)


def changed_per_host(output):
    recap = output.split("PLAY RECAP", 1)[1]
    return dict(re.findall(r"^(\S+)\s*:.*changed=(\d+)", recap, re.M))


def tasks_run(output):
    """[(task title, {hosts it ran on (ok or changed)})] in the order of the output."""
    out = []
    for section in re.split(r"^TASK \[", output, flags=re.M)[1:]:
        title = section.split("]", 1)[0]
        hosts = set(re.findall(r"^(?:ok|changed): \[([^\]\s]+)", section, re.M))
        out.append((title, hosts))
    return out


def per_node_work(output, host):
    """The per-node roles' tasks (adopt_*) that ran on host, not skipped."""
    return [t for t, hosts in tasks_run(output) if t.startswith("hpc.slurm_adopt.adopt_") and host in hosts]


def ran_on(output, title):
    """The hosts the task(s) of this title ran on."""
    return set().union(*([hosts for t, hosts in tasks_run(output) if t == title] or [set()]))


FAST = {"saf-node1": "converged (fast path)", "saf-node2": "converged (fast path)",
        "saf-ctl": "left alone (login/controller)", "saf-login": "left alone (login/controller)"}


def test_second_run_changes_nothing_and_takes_the_fast_path(fleet, rolled_out):
    """Right after a successful full run, the next one changes nothing and
    takes the converged fast path on both compute nodes: one read-only step
    each, no role of the rollout runs there, no slurm.conf step, no facts.
    (The first run here may be a full one, when the nodes were rolled out by
    an earlier session or changed since; the second must be fast.)"""
    first = fleet.playbook("site")
    assert first.rc == 0, first.log
    res = first if summary(first.out) == FAST else fleet.playbook("site")
    assert res.rc == 0, res.log
    assert summary(res.out) == FAST, res.log
    changed = changed_per_host(res.out)
    assert set(changed) == {"saf-ctl", "saf-node1", "saf-node2", "saf-login"}, changed
    assert set(changed.values()) == {"0"}, changed
    for host in ("saf-node1", "saf-node2"):
        assert per_node_work(res.out, host) == [], (host, res.log)
        assert "a fresh ssh login" not in res.out, res.log
    assert "TASK [Gathering Facts]" not in res.out, res.log
    assert ran_on(res.out, "hpc.slurm_adopt.slurm_adopt : Facts of the node for the full run (minimal subset)") == set()
    # the decision: one step on each node
    assert ran_on(res.out, "hpc.slurm_adopt.slurm_adopt : Is this node already exactly as this run would leave it "
                           "(read-only)") == {"saf-node1", "saf-node2"}, res.log
    # the slurm.conf step (play 2) ran only on the login and controller nodes
    slurm_conf = res.out.split("PLAY [Slurm prerequisites", 1)[1].split("PLAY [", 1)[0]
    assert {h for _t, hosts in tasks_run(slurm_conf) for h in hosts} == {"saf-ctl", "saf-login"}, slurm_conf
    for node in COMPUTE:
        assert fleet.is_rolled_out(node), node


def test_drift_or_a_changed_setting_defeats_the_fast_path_and_is_repaired(fleet, rolled_out, tmp_path):
    """node1: sshd's UsePAM turned off in sshd_config (not reloaded): the
    drift check does not look at sshd, the fast path's record of the files
    does; node2: a setting changed for it alone (an extra user who must get
    in).  Both get the full run; node1's UsePAM is yes again.  With the lab's
    inventory again, node1 is converged and node2 gets the full run (its
    inputs changed back).  With slurm_adopt_fast_converged=false both get the
    full run, and it changes nothing."""
    assert fleet.playbook("site").rc == 0          # converged from here (see the previous test)
    conf = "/etc/ssh/sshd_config"
    fleet.must("node1", "grep -q '^UsePAM yes$' %s && sed -i 's/^UsePAM yes$/UsePAM no/' %s" % (conf, conf))
    inventory = write_inventory(str(tmp_path), {"saf-node2": {"adopt_pam_ensure_access_for": ["fleetadmin"]}})
    res = fleet.playbook("site", inventory=inventory)
    assert res.rc == 0, res.log
    assert summary(res.out)["saf-node1"] == "adopted" and summary(res.out)["saf-node2"] == "adopted", res.log
    assert re.search(r"saf-node1: full run: changed since the last full run: .*file /etc/ssh/sshd_config: ", res.out), res.log
    assert "saf-node2: full run: the inputs changed since the last full run" in res.out, res.log
    for host in ("saf-node1", "saf-node2"):
        assert "pre-flight passed on %s" % host in res.out, res.log
    assert fleet.must("node1", "grep -c '^UsePAM yes$' %s" % conf).strip() == "1"
    assert fleet.must("node1", "sshd -T | grep -i '^usepam '").strip() == "usepam yes"

    res = fleet.playbook("site")
    assert res.rc == 0, res.log
    result = summary(res.out)
    assert result["saf-node1"] == "converged (fast path)" and result["saf-node2"] == "adopted", res.log
    assert per_node_work(res.out, "saf-node1") == [] and per_node_work(res.out, "saf-node2") != [], res.log

    res = fleet.playbook("site", "-e", "slurm_adopt_fast_converged=false")
    assert res.rc == 0, res.log
    assert summary(res.out)["saf-node1"] == "adopted" and summary(res.out)["saf-node2"] == "adopted", res.log
    for host in ("saf-node1", "saf-node2"):
        assert "%s: full run: slurm_adopt_fast_converged is false" % host in res.out, res.log
        assert "pre-flight passed on %s" % host in res.out, res.log
    assert set(changed_per_host(res.out).values()) == {"0"}, changed_per_host(res.out)
    # and the record it left is the same: the next run is fast on both
    res = fleet.playbook("site")
    assert res.rc == 0 and summary(res.out) == FAST, res.log


# ---------------------------------------------------------------------------
# 5. what users see
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("node", COMPUTE)
def test_user_with_a_job_is_adopted_into_its_extern_step(fleet, rolled_out, node):
    job = fleet.submit("fleetalice", "-w " + node)
    res = fleet.ssh("login", "fleetalice", node, "echo JOB=$SLURM_JOB_ID; cat /proc/self/cgroup")
    assert res.ok, res
    assert job_of(res.out) == job, res.out
    assert "JOB=%d" % job in res.out, res.out          # pam_putenv (pam_python, and the client)


@pytest.mark.parametrize("target", COMPUTE)
def test_callerid_across_nodes_picks_the_calling_job(fleet, rolled_out, target):
    """fleetbob has an old job on the target node, a two-node job on both
    nodes and the newest job on the target.  An ssh from inside the two-node
    job on the other node to the target lands in that job (the target's
    module asks the other node's slurmd which job owns the connection), not
    in the newest one.  Once into the service node, once into the pam_python
    one."""
    source = [n for n in COMPUTE if n != target][0]
    old = fleet.submit("fleetbob", "-w " + target)
    span = fleet.submit("fleetbob", "-N 2 -w node1,node2")
    newest = fleet.submit("fleetbob", "-w " + target)
    try:
        res = fleet.ssh("login", "fleetbob", target, "cat /proc/self/cgroup")
        assert res.ok and job_of(res.out) == newest, res
        res = fleet.exec("ctl", "srun --jobid=%d -w %s -N1 -n1 --overlap ssh -o LogLevel=INFO %s "
                                "cat /proc/self/cgroup" % (span, source, target), user="fleetbob")
        assert res.ok, res
        assert job_of(res.out) == span, (res.out, old, span, newest)
    finally:
        fleet.cancel_all()


@pytest.mark.parametrize("node", COMPUTE)
def test_user_without_a_job_is_denied(fleet, rolled_out, node):
    res = fleet.ssh("login", "fleetbob", node)
    assert res.rc == 255, res
    assert NO_JOBS in res.err, res


def test_admin_gets_in_without_a_job(fleet, rolled_out):
    res = fleet.ssh("login", "fleetadmin", "node1", "cat /proc/self/cgroup; id -un")
    assert res.ok, res
    assert job_of(res.out) is None and "fleetadmin" in res.out


def test_login_node_is_never_locked(fleet, rolled_out):
    res = fleet.ssh("node1", "fleetadmin", "login", "id -un")
    assert res.ok
    res = fleet.ssh("ctl", "fleetbob", "login", "id -un")   # no job anywhere
    assert res.ok and "fleetbob" in res.out, res
    assert "pam_slurm_adopt" not in fleet.must("login", "cat /etc/pam.d/sshd")


# ---------------------------------------------------------------------------
# 5b. the service interface on node1, under the container's real systemd
# ---------------------------------------------------------------------------

def test_service_node_has_the_client_and_the_socket_and_a_login_starts_the_service(fleet, rolled_out):
    """What role adopt_module left on node1: slurm-adopt.socket enabled and
    listening (root:root 0600), the client the PAM rule names built on the
    node, linked to libc and libpam only, with the checksum the role
    recorded.  A login starts slurm-adopt.service through the socket and is
    answered by it (no fallback)."""
    node = SERVICE_NODE
    out = fleet.must(node, "systemctl is-enabled slurm-adopt.socket; systemctl is-active slurm-adopt.socket; "
                           "stat -c '%F %U:%G %a' /run/slurm-adopt/adopt.sock").split("\n")
    assert out[:3] == ["enabled", "active", "socket root:root 600"], out
    record = json.loads(fleet.must(node, "cat /usr/lib/slurm-adopt/client.build-id"))
    assert record["path"] == CLIENT, record
    assert fleet.must(node, "stat -c '%U:%G %a' " + CLIENT).strip() == "root:root 644"
    assert fleet.must(node, "sha256sum " + CLIENT).split()[0] == record["output"], record
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", fleet.must(node, "readelf -d " + CLIENT))
    assert sorted(needed) == ["libc.so.6", "libpam.so.0"], needed
    sshd = fleet.must(node, "cat /etc/pam.d/sshd")
    assert re.search(r"^account\s+\S+\s+pam_slurm_adopt_client\.so\s+action_adopt_failure=deny", sshd, re.M), sshd
    assert "pam_python" not in sshd, sshd

    fleet.must(node, "systemctl stop slurm-adopt.service && ! systemctl is-active -q slurm-adopt.service")
    job = fleet.submit("fleetalice", "-w " + node)
    mark = fleet.journal_mark(node)
    res = fleet.ssh("login", "fleetalice", node, "cat /proc/self/cgroup")
    assert res.ok and job_of(res.out) == job, res
    assert fleet.must(node, "systemctl is-active slurm-adopt.service").strip() == "active"
    assert FALLBACK not in fleet.journal_since(node, mark)


def test_scancel_kills_the_session_adopted_through_the_service(fleet, rolled_out):
    node = SERVICE_NODE
    job = fleet.submit("fleetalice", "-w " + node)
    fleet.must("login", "setsid -f ssh -n %s 'exec sleep 7771' </dev/null >/dev/null 2>&1" % node, user="fleetalice")
    pid = None
    for _ in range(60):
        pid = fleet.exec(node, "pgrep -u fleetalice -x -f 'sleep 7771'").out.split()
        if pid:
            break
        time.sleep(0.5)
    assert pid, "the background session did not start"
    assert job_of(fleet.must(node, "cat /proc/%s/cgroup" % pid[0])) == job
    fleet.must("ctl", "scancel %d" % job)
    for _ in range(120):
        if not fleet.exec(node, "pgrep -u fleetalice -x -f 'sleep 7771'").out.split():
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the adopted session outlived scancel of job %d" % job)


def test_service_stopped_and_masked_the_fallback_child_adopts_and_denies(fleet, rolled_out):
    """The socket and the service stopped and masked (what an admin or a
    broken upgrade can do): the client runs the Python module as its child,
    which adopts and denies as the service would; the drift check's service
    check is red meanwhile, green again once the socket is back."""
    node = SERVICE_NODE
    job = fleet.submit("fleetalice", "-w " + node)
    fleet.must(node, "systemctl stop slurm-adopt.socket slurm-adopt.service && "
                     "systemctl mask --runtime slurm-adopt.socket slurm-adopt.service")
    try:
        mark = fleet.journal_mark(node)
        res = fleet.ssh("login", "fleetalice", node, "echo JOB=$SLURM_JOB_ID; cat /proc/self/cgroup")
        assert res.ok and job_of(res.out) == job and "JOB=%d" % job in res.out, res
        res = fleet.ssh("login", "fleetbob", node)
        assert res.rc == 255 and NO_JOBS in res.err, res
        assert len(re.findall(FALLBACK, fleet.journal_since(node, mark))) == 2, fleet.journal_since(node, mark)
        red = fleet.exec(node, CHECK + " --only service --no-metrics")
        # a runtime mask: is-enabled may still answer "enabled" (seen), so the
        # check reports the stopped socket; either way it is red and says so
        assert red.rc == 2 and re.search(r"slurm-adopt\.socket is (masked-runtime, expected enabled"
                                         r"|inactive, expected active)", red.out), red
    finally:
        fleet.must(node, "systemctl unmask --runtime slurm-adopt.socket slurm-adopt.service && "
                         "systemctl start slurm-adopt.socket")
    assert fleet.exec(node, CHECK + " --only service --no-metrics").rc == 0
    assert fleet.is_rolled_out(node)


# ---------------------------------------------------------------------------
# 6. health
# ---------------------------------------------------------------------------

EXPECTED_CHECKS = {"module_file", "account_stack", "admin_access", "bypass", "pam_systemd", "logind", "interface", "service",
                   "slurm_config", "slurmd", "stepd_sockets", "explain", "pam_live", "module_loads"}


def test_healthcheck_green(fleet, rolled_out):
    report = os.path.join(fleet.log_dir, "health-green.json")
    res = fleet.playbook("healthcheck", "-e", "slurm_adopt_health_json=%s" % report)
    assert res.rc == 0, res.log
    assert "overall: OK (2 green, 0 warning, 0 red, 0 unreachable)" in res.out, res.out[-3000:]
    with open(report) as handle:
        data = json.load(handle)
    assert {n["host"] for n in data["nodes"]} == {"saf-node1", "saf-node2"}
    for node in data["nodes"]:
        checks = {c["check"]: c["status"] for c in node["checks"]}
        assert set(checks) == EXPECTED_CHECKS, node
        assert set(checks.values()) == {"ok"}, node
    # the service node's checks are the service's own, not "not service"
    messages = {n["host"]: {c["check"]: c["message"] for c in n["checks"]} for n in data["nodes"]}
    service = messages["saf-" + SERVICE_NODE]
    assert service["service"] == "slurm-adopt.socket enabled and active, /run/slurm-adopt/adopt.sock root:root 0600", service
    assert "checksum matches the build record" in service["interface"], service
    assert "links only libc.so.6, libpam.so.0" in service["interface"], service
    assert messages["saf-node2"]["service"].startswith("interface is not service"), messages["saf-node2"]
    # one step per node ran the installed check (it is the collection's): no fresh copy, no facts
    assert ran_on(res.out, "hpc.slurm_adopt.slurm_adopt : Why the collection's check is copied fresh here") == set(), res.log
    assert ran_on(res.out, "hpc.slurm_adopt.adopt_drift : Run it (check)") == set(), res.log
    assert ran_on(res.out, "hpc.slurm_adopt.slurm_adopt : The installed drift check, a copy of the live PAM tree, "
                           "the module's own decision (one step)") == {"saf-node1", "saf-node2"}, res.log
    assert "TASK [Gathering Facts]" not in res.out, res.log
    # the same checks, as the shipped testinfra suite over ssh: every test passes
    res = fleet.testinfra("node1", "node2")
    assert res.ok and res.outcomes, res.out[-3000:]
    assert set(res.outcomes.values()) == {"passed"}, res.outcomes


def test_healthcheck_copies_the_check_fresh_where_the_installed_one_is_not_the_collections(fleet, rolled_out):
    """An installed check that was edited on node1 must not vouch for the
    node: the health check copies the collection's check there (and only
    there) and still reports every check; node2 keeps the one step."""
    path = "/usr/lib/slurm-adopt/slurm_adopt_check.py"
    fleet.must("node1", "cp -p %s /root/check.saved && echo '# edited on the node' >> %s" % (path, path))
    try:
        report = os.path.join(fleet.log_dir, "health-fallback.json")
        res = fleet.playbook("healthcheck", "-e", "slurm_adopt_health_json=%s" % report)
    finally:
        fleet.must("node1", "cp -p /root/check.saved %s && rm -f /root/check.saved" % path)
    assert res.rc == 0, res.log
    assert "saf-node1: %s differs from the collection's; the collection's check is copied fresh" % path in res.out, res.log
    assert "saf-node2: " + path not in res.out, res.log
    assert "overall: OK (2 green, 0 warning, 0 red, 0 unreachable)" in res.out, res.out[-3000:]
    with open(report) as handle:
        data = json.load(handle)
    for node in data["nodes"]:
        assert {c["check"] for c in node["checks"]} == EXPECTED_CHECKS, node
    # the fresh copy ran on node1 only
    assert ran_on(res.out, "hpc.slurm_adopt.adopt_drift : Run it (check)") == {"saf-node1"}, res.log


def test_drift_hook_never_resumes_a_node_someone_else_drained(fleet, rolled_out):
    fleet.must("ctl", "scontrol update NodeName=node2 State=DRAIN Reason='disk replacement'")
    try:
        out = run_drift_hook(fleet, "node2").out     # node2 is healthy
        assert "action: none" in out, out
        state, reason = fleet.node_state("node2")
        assert "DRAIN" in state and reason == "disk replacement", (state, reason)
    finally:
        fleet.must("ctl", "scontrol update NodeName=node2 State=RESUME")


# ---------------------------------------------------------------------------
# 7. an upgrade whose node turns red is rolled back by the drift check
# ---------------------------------------------------------------------------

def test_upgrade_rolled_back_by_the_drift_check(fleet, rolled_out, tmp_path):
    """A new collection release (a module file differs) together with a
    drift-check setting the cluster does not meet (it asks for PrologFlags
    X11): on the canary the new release is installed and switched to, the
    fresh logins work, but the node's own drift check is red, so the canary
    is rolled back - to the release that was active - and node2 is never
    touched."""
    coll = snapshot_collection(str(tmp_path / "v2"))
    with open(os.path.join(coll, "ansible_collections", "hpc", "slurm_adopt", "roles", "adopt_module", "files",
                           "slurm_adopt", "constants.py"), "a") as handle:
        handle.write("\n# release 2 of the fleet test\n")
    current = {node: fleet.must(node, "readlink /usr/lib/slurm-adopt/current").strip() for node in COMPUTE}
    files = {node: fleet.fingerprint(node) for node in COMPUTE}
    flags = {"PrologFlags": ["contain", "x11"], "ProctrackType": ["proctrack/cgroup"], "TaskPlugin": ["task/cgroup"]}
    res = fleet.playbook("site", "-e", "slurm_adopt_canary=1", "-e", json.dumps({"adopt_drift_slurm_flags": flags}),
                         collections=coll)
    assert res.rc != 0, res.log
    assert "a fresh ssh login as %s works after the change" % ANSIBLE_USER in res.out, res.log
    assert "saf-node1 ROLLED BACK" in res.out and "lacks x11" in res.out, res.log
    assert not rollout_touched(res.out, "saf-node2"), res.log
    # node1 runs the service interface: its adoption service, started by the
    # fresh logins of the new release, must not go on serving that release
    # after the rollback switched current back (it is restarted, or idle)
    started, switched = fleet.must(SERVICE_NODE, (
        'pid=$(systemctl show -p MainPID --value slurm-adopt.service); '
        'if [ "$pid" = 0 ]; then echo idle; else date -d "$(ps -o lstart= -p "$pid")" +%s; fi; '
        'stat -c %Y /usr/lib/slurm-adopt/current')).split()
    assert started == "idle" or int(started) >= int(switched), (started, switched)
    for node in COMPUTE:
        assert fleet.must(node, "readlink /usr/lib/slurm-adopt/current").strip() == current[node], node
        # only the new release's directory is left next to the active one (never loaded)
        left = diff_fingerprints(files[node], fleet.fingerprint(node))
        assert all(d.startswith("/usr/lib/slurm-adopt/releases/") for d in left), (node, left)
        assert fleet.is_rolled_out(node), node
    assert diff_fingerprints(files["node2"], fleet.fingerprint("node2")) == []


# ---------------------------------------------------------------------------
# 8. drift and a broken install: red health, the hook drains
# ---------------------------------------------------------------------------

def test_drift_and_a_broken_install_turn_health_red_and_drain(fleet, rolled_out):
    """node1: a tool re-enables pam_systemd through pam-auth-update.
    node2: the module's package is broken (an import fails): root still gets
    PAM_IGNORE, so only a check that makes the module decide notices."""
    fleet.must("node1", "rm -f /usr/share/pam-configs/slurm-adopt && "
                        "DEBIAN_FRONTEND=noninteractive pam-auth-update --enable systemd && "
                        "grep -q '^session.*pam_systemd' /etc/pam.d/common-session")
    fleet.must("node2", "echo 'raise ImportError(\"broken by the fleet test\")' "
                        ">> /usr/lib/slurm-adopt/slurm_adopt/entry.py")
    report = os.path.join(fleet.log_dir, "health-red.json")
    res = fleet.playbook("healthcheck", "-e", "slurm_adopt_health_json=%s" % report)
    assert res.rc == 2, res.log
    assert "saf-node1 RED" in res.out and "pam_systemd reachable" in res.out, res.out[-3000:]
    assert "saf-node2 RED" in res.out, res.out[-3000:]
    with open(report) as handle:
        data = {n["host"]: {c["check"]: c["status"] for c in n["checks"]} for n in json.load(handle)["nodes"]}
    assert data["saf-node1"]["pam_systemd"] == "fail", data
    assert data["saf-node2"]["module_loads"] == "fail" and data["saf-node2"]["module_file"] == "fail", data
    assert data["saf-node2"]["pam_live"] == "ok", data      # root still gets in: the break is invisible there
    # the shipped testinfra suite sees the same
    res = fleet.testinfra("node1", "node2")
    failed = sorted(name for name, outcome in res.outcomes.items() if outcome == "failed")
    assert res.rc == 1, res.out[-3000:]
    assert any(n.startswith("test_slurm_adopt_node::test_pam_systemd_unreachable[") and "%s" % fleet.address("node1") in n
               for n in failed), failed
    assert any(n.startswith("test_slurm_adopt_node::test_pam_python_loads[") and fleet.address("node2") in n
               for n in failed), failed
    # what slurmd's HealthCheckProgram runs drains both nodes, with reasons of its own
    for node, why in (("node1", "slurm-adopt: pam_systemd"), ("node2", "slurm-adopt: module_file")):
        out = run_drift_hook(fleet, node).out
        assert re.search(r"^action: drain$", out, re.M), out
        state, reason = fleet.node_state(node)
        assert "DRAIN" in state and reason.startswith(why), (state, reason)


# ---------------------------------------------------------------------------
# 9. removal gives the nodes back, drained ones resumed
# ---------------------------------------------------------------------------

def test_remove_gives_the_nodes_back(fleet, baseline):
    """From whatever state the nodes are in (rolled out, drifted, drained by
    the drift check): remove.yml restores every watched file, systemd-logind
    as it was (running, on the stock lab), takes HealthCheckProgram out of
    slurm.conf, resumes the nodes the drift check drained, and users without
    a job get in again."""
    if any(fleet.is_pristine(node) for node in COMPUTE):
        res = fleet.playbook("site")
        assert res.rc == 0, res.log
    drained = [n for n in COMPUTE if fleet.node_state(n)[1].startswith("slurm-adopt:")]
    if not drained:   # run alone: make the drift check drain node2
        fleet.must("node2", "echo '# changed' >> /usr/lib/slurm-adopt/slurm_adopt/flow.py")
        assert "action: drain" in run_drift_hook(fleet, "node2").out
        drained = ["node2"]
    res = fleet.playbook("remove")
    assert res.rc == 0, res.log
    assert summary(res.out) == {"saf-node1": "removed", "saf-node2": "removed"}, res.log
    for node in COMPUTE:
        assert diff_fingerprints(baseline[node], fleet.fingerprint(node)) == [], node
        assert "DRAIN" not in fleet.node_state(node)[0], node
    assert "HealthCheck" not in fleet.slurm_conf()
    assert fleet.ssh("login", "fleetbob", "node1").ok
