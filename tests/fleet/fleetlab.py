# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers and fixtures for the fleet tests: the multi-node podman lab (lab/fleet) and
ansible-playbook runs of the collection's playbooks against it.

The lab must be up (lab/fleet/test.sh brings it up fresh, runs these tests
and tears it down).  Without it the tests fail, unless FLEET_LAB_OPTIONAL=1
(then they skip).

The tests do not depend on their order: a test that needs the stock nodes
takes the `pristine` fixture (which runs remove.yml when the nodes carry the
rollout), one that needs the rollout takes `rolled_out` (which runs site.yml
when they do not, or when a node is drifted or drained).  The files of the
stock nodes are recorded once, on a lab that is known to be fresh, in
$STATE/baseline.json.

The playbooks run from a snapshot of the collection taken when the session
starts (ANSIBLE_COLLECTIONS_PATH), so that edits to the working tree during
the run cannot change what is deployed half-way through.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from xml.etree import ElementTree

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STATE = os.environ.get("FLEET_STATE", os.path.join(REPO, "lab", "fleet", ".state"))
INVENTORY = os.path.join(STATE, "inventory.yml")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
CONTAINERS = {"ctl": "saf-ctl", "node1": "saf-node1", "node2": "saf-node2", "login": "saf-login"}
COMPUTE = ("node1", "node2")
# What a rollout may change on a compute node, and what a removal must restore
# (the module and the drift check, /usr/lib/slurm-adopt, must be gone; the
# rollout's state below /var/lib/slurm-adopt and /etc/slurm-adopt too).
# The service interface (node1, lab/fleet/host_vars) adds its PAM client and
# its units (SERVICE_FILES); the build record is in /usr/lib/slurm-adopt.
SERVICE_NODE = "node1"
CLIENT = "/usr/lib/x86_64-linux-gnu/security/pam_slurm_adopt_client.so"
SERVICE_FILES = [CLIENT, "/etc/systemd/system/slurm-adopt.socket", "/etc/systemd/system/slurm-adopt.service",
                 "/etc/systemd/system/sockets.target.wants/slurm-adopt.socket"]
WATCHED = ["/etc/pam.d", "/etc/security", "/usr/share/pam-configs", "/var/lib/pam",
           "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/usr/lib/slurm-adopt",
           "/var/lib/slurm-adopt", "/etc/slurm-adopt", "/usr/sbin/slurm-adopt-healthcheck",
           "/etc/systemd/system/systemd-logind.service"] + SERVICE_FILES
ANSIBLE_USER = "fleetops"       # what the lab's ssh config (not ansible_user) connects as


class Result(object):
    def __init__(self, rc, out, err=""):
        self.rc, self.out, self.err = rc, out, err

    @property
    def ok(self):
        return self.rc == 0

    def __repr__(self):
        return "Result(rc=%r, out=%r, err=%r)" % (self.rc, self.out[-2000:], self.err[-2000:])


def run(argv, timeout=600, env=None, stdin=None):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, env=env, input=stdin,
                          check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Fleet(object):
    """The lab: run commands in its containers, ssh between them, submit
    jobs, run playbooks."""

    def __init__(self, collections_dir):
        self.collections_dir = collections_dir
        self.log_dir = os.environ.get("FLEET_LOG_DIR") or tempfile.mkdtemp(prefix="fleet-logs-")
        if not os.path.isdir(self.log_dir):
            os.makedirs(self.log_dir)

    # -- containers ---------------------------------------------------------
    def exec(self, node, cmd, user=None, timeout=120, env=None):
        argv = ["podman", "exec"]
        for key, value in (env or {}).items():
            argv += ["-e", "%s=%s" % (key, value)]
        if user:
            cmd = "su - %s -c %s" % (user, _q(cmd))
        argv += [CONTAINERS[node], "bash", "-c", cmd]
        res = run(argv, timeout=timeout)
        # On this cgroup-v1 host the containers' systemds share the root of
        # the name=systemd hierarchy (their init shows as /init.scope there):
        # any container's systemd that shuts down (another lab's) trims the
        # empty libpod-<id> directories runc joins for `podman exec`.  Give
        # runc its directory back, once.
        missing = re.search(r"openat2 (/sys/fs/cgroup/systemd/libpod_parent/libpod-[0-9a-f]+)/cgroup\.procs: "
                            r"no such file", res.err)
        if res.rc != 0 and missing:
            os.makedirs(missing.group(1), exist_ok=True)
            res = run(argv, timeout=timeout)
        return res

    def must(self, node, cmd, **kw):
        res = self.exec(node, cmd, **kw)
        assert res.ok, "%s: %s failed: %r" % (node, cmd, res)
        return res.out

    def ssh(self, src, user, dest, cmd="true", timeout=60):
        """A real ssh login as `user` from container `src` to host `dest`,
        LogLevel INFO so that PAM's messages come back on stderr."""
        return self.exec(src, "ssh -o LogLevel=INFO %s %s" % (dest, _q(cmd)), user=user,
                         timeout=timeout)

    # -- Slurm --------------------------------------------------------------
    def submit(self, user, args="", wait=60):
        out = self.must("ctl", "sbatch --parsable -o /dev/null --chdir=/tmp %s --wrap 'sleep 900'"
                        % args, user=user).strip()
        job = int(out.split(";")[0])
        self.wait_running(job, wait)
        return job

    def wait_running(self, job, wait=60):
        deadline = time.time() + wait
        while time.time() < deadline:
            out = self.exec("ctl", "squeue -h -j %d -o '%%T %%N'" % job).out.split()
            if out and out[0] == "RUNNING":
                nodes = self.exec("ctl", "scontrol show hostnames %s" % out[1]).out.split()
                if all(self.exec(n, "ls /var/lib/slurm/slurmd/%s_%d.4294967292" % (n, job)).ok
                       for n in nodes):
                    return nodes
            time.sleep(0.5)
        raise AssertionError("job %d not running with its extern step(s) after %ss: %s"
                             % (job, wait, self.exec("ctl", "squeue; sinfo -N").out))

    def cancel_all(self):
        self.exec("ctl", "scancel -u fleetalice; scancel -u fleetbob; scancel -u fleetadmin")
        deadline = time.time() + 60
        while time.time() < deadline and self.exec("ctl", "squeue -h").out.strip():
            time.sleep(0.5)

    def slurm_conf(self):
        """The cluster's one slurm.conf (on the volume every container shares)."""
        return self.must("ctl", "cat /etc/slurm/slurm.conf")

    def stock_slurm_conf(self):
        """The cluster's slurm.conf as the fresh lab has it (lab/fleet/up.sh's:
        no Contain, no task/cgroup), the daemons restarted with it when it
        was not: what a test of the slurm.conf change needs."""
        with open(os.path.join(STATE, "slurm.conf")) as handle:
            stock = handle.read()
        if self.slurm_conf() == stock:
            return
        res = run(["podman", "cp", os.path.join(STATE, "slurm.conf"), "saf-ctl:/etc/slurm/slurm.conf"])
        assert res.ok, res
        self.must("ctl", "chmod 644 /etc/slurm/slurm.conf && systemctl restart slurmctld")
        for node in COMPUTE:
            self.must(node, "systemctl restart slurmd")
        deadline = time.time() + 90
        while time.time() < deadline:
            states = self.exec("ctl", "sinfo -h -N -o '%T'").out.split()
            if len(states) == 2 and all(s in ("idle", "drained", "draining") for s in states):
                return
            time.sleep(1)
        raise AssertionError("nodes not back after restoring the stock slurm.conf: %s" % self.exec("ctl", "sinfo -N").out)

    def journal_mark(self, node):
        """A cursor-like mark: the node's clock now (journalctl --since)."""
        return self.must(node, "date +%s.%N").strip()

    def journal_since(self, node, mark):
        """The node's journal (syslog included: pam_syslog, the client) since mark."""
        return self.must(node, "journalctl -q -o cat --no-pager --since @%s" % mark.split(".")[0])

    def daemon_pid(self, node, unit):
        return int(self.must(node, "systemctl show -p MainPID --value %s" % unit).strip())

    def is_rolled_out(self, node):
        """The rollout is in place and healthy on the node (adopt rule, module,
        drift check green, not drained by it)."""
        res = self.exec(node, "/usr/sbin/slurm-adopt-healthcheck --dry-run", env={"SLURMD_NODENAME": node})
        return res.ok and "action: none" in res.out and "FAIL" not in res.out

    def is_pristine(self, node):
        return (not self.exec(node, "test -e /usr/lib/slurm-adopt").ok
                and "pam_slurm_adopt" not in self.exec(node, "grep -rh pam_slurm_adopt /etc/pam.d").out)

    def node_state(self, node):
        out = self.must("ctl", "scontrol show node %s" % node)
        state = re.search(r"State=(\S+)", out).group(1)
        reason = re.search(r"^\s*Reason=(.*?)(?: \[[^\]]*\])?\s*$", out, re.M)
        return state, reason.group(1) if reason else ""

    # -- files ----------------------------------------------------------------
    def fingerprint(self, node):
        """sha256 + owner + mode of every watched file, symlink targets, and
        logind's state."""
        script = r"""
for p in %s; do
  [ -e "$p" ] || [ -L "$p" ] || { echo "absent $p"; continue; }
  find "$p" \( -type f -o -type l \) -print0 | sort -z | while IFS= read -r -d '' f; do
    if [ -L "$f" ]; then echo "link $f -> $(readlink "$f")";
    else echo "file $f $(stat -c '%%U:%%G:%%a' "$f") $(sha256sum < "$f" | cut -c1-64)"; fi
  done
done
echo "logind $(systemctl is-enabled systemd-logind 2>&1 | tail -n1) $(systemctl is-active systemd-logind 2>&1 | tail -n1)"
""" % " ".join(WATCHED)
        return dict(_fp_line(line) for line in self.must(node, script).splitlines() if line)

    # -- ansible ------------------------------------------------------------
    def playbook(self, name, *args, timeout=900, collections=None, inventory=INVENTORY):
        env = dict(os.environ)
        env.update({"ANSIBLE_COLLECTIONS_PATH": collections or self.collections_dir, "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOST_KEY_CHECKING": "False",
                    "ANSIBLE_RETRY_FILES_ENABLED": "False",
                    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                    # sudo on a loaded test machine can take longer than the default 10 s
                    "ANSIBLE_TIMEOUT": "60",
                    "PATH": VENV_BIN + os.pathsep + env.get("PATH", "")})
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "hpc.slurm_adopt." + name] + list(args)
        started = time.time()
        res = run(argv, timeout=timeout, env=env)
        log = os.path.join(self.log_dir, "%s-%d.log" % (name, int(started)))
        with open(log, "w") as handle:
            handle.write("$ %s\n%s\n%s" % (" ".join(argv), res.out, res.err))
        res.log = log
        res.seconds = time.time() - started
        return res

    def testinfra(self, *nodes, select=None):
        """The shipped testinfra suite (tests/testinfra of the collection
        snapshot) over real ssh, as a site would run it.  Returns the Result
        with .outcomes: {test name: outcome} read from its junit report."""
        hosts = ",".join("ssh://%s" % self.address(n) for n in nodes)
        report = os.path.join(self.log_dir, "testinfra-%d.xml" % int(time.time() * 1000))
        argv = [os.path.join(VENV_BIN, "pytest"), "-p", "no:cacheprovider", "-o", "addopts=",
                "-q", "-rf", "--junitxml=%s" % report, "--ssh-config=%s" % os.path.join(STATE, "ssh_config"),
                "--hosts=%s" % hosts]
        if select:
            argv += ["-k", select]
        res = run(argv + [os.path.join(self.collections_dir, "ansible_collections", "hpc", "slurm_adopt",
                                       "tests", "testinfra")], timeout=300)
        res.outcomes = junit_outcomes(report)
        return res

    def address(self, node):
        with open(INVENTORY) as handle:
            text = handle.read()
        match = re.search(r"%s:\s*\n\s*ansible_host: (\S+)" % CONTAINERS[node], text)
        return match.group(1)


def junit_outcomes(path):
    """{test id: 'passed' | 'failed' | 'skipped' | 'error'} of a junit XML report."""
    out = {}
    if not os.path.exists(path):
        return out
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        out["%s::%s" % (case.get("classname", "").rsplit(".", 1)[-1], case.get("name"))] = outcome
    return out


def _fp_line(line):
    kind, rest = line.split(" ", 1)
    if kind == "logind":
        return "logind", rest
    if kind == "link":
        path, target = rest.split(" -> ", 1)
        return path, "-> " + target
    if kind == "absent":
        return rest, "absent"
    path, meta = rest.rsplit(" ", 2)[0], " ".join(rest.rsplit(" ", 2)[1:])
    return path, meta


def _q(text):
    return "'" + text.replace("'", "'\\''") + "'"


def snapshot_collection(dest):
    """Copy the collection as it is now (tracked and untracked, not ignored)."""
    coll = os.path.join(dest, "ansible_collections", "hpc", "slurm_adopt")
    os.makedirs(coll)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, stdout=subprocess.PIPE, check=True).stdout.split(b"\0")
    for name in files:
        name = name.decode()
        if not name or name.startswith(("lab/", "benchmarks/", "tests/node/", "tests/unit/")):
            continue
        src = os.path.join(REPO, name)
        if not os.path.isfile(src):
            continue
        target = os.path.join(coll, name)
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target))
        shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    if not os.path.exists(INVENTORY) or not run(["podman", "container", "exists",
                                                 "saf-node1"]).ok:
        if os.environ.get("FLEET_LAB_OPTIONAL") == "1":
            pytest.skip("fleet lab is not up (lab/fleet/up.sh)")
        pytest.fail("fleet lab is not up: run lab/fleet/test.sh (or lab/fleet/up.sh)")
    dest = snapshot_collection(str(tmp_path_factory.mktemp("collection")))
    return Fleet(dest)


@pytest.fixture(scope="session")
def baseline(fleet):
    """The compute nodes' watched files as the fresh lab has them: recorded
    once (in $STATE/baseline.json, removed by a fresh up.sh) while the nodes
    are known to be stock."""
    path = os.path.join(STATE, "baseline.json")
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    for node in COMPUTE:
        assert fleet.is_pristine(node), (
            "%s carries the rollout and no baseline was recorded: bring the lab up fresh "
            "(FLEET_FRESH=1 lab/fleet/up.sh, or lab/fleet/test.sh)" % node)
    data = {node: fleet.fingerprint(node) for node in COMPUTE}
    with open(path, "w") as handle:
        json.dump(data, handle)
    return data


@pytest.fixture
def pristine(fleet, baseline):
    """The compute nodes as stock Debian (remove.yml first when needed)."""
    if not all(fleet.is_pristine(node) for node in COMPUTE):
        res = fleet.playbook("remove")
        assert res.rc == 0, res.log
    for node in COMPUTE:
        if "DRAIN" in fleet.node_state(node)[0]:
            fleet.must("ctl", "scontrol update NodeName=%s State=RESUME" % node)
        left = diff_fingerprints(baseline[node], fleet.fingerprint(node))
        assert left == [], (node, left)
    return baseline


@pytest.fixture
def rolled_out(fleet):
    """The rollout in place and green on both compute nodes (site.yml first
    when needed)."""
    if not all(fleet.is_rolled_out(node) for node in COMPUTE):
        res = fleet.playbook("site")
        assert res.rc == 0, res.log
        for node in COMPUTE:
            out = fleet.exec(node, "/usr/sbin/slurm-adopt-healthcheck", env={"SLURMD_NODENAME": node}).out
            assert fleet.is_rolled_out(node), out
    fleet.cancel_all()


def diff_fingerprints(before, after):
    out = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            out.append("%s: %s -> %s" % (path, before.get(path, "missing"), after.get(path, "missing")))
    return out


def write_inventory(directory, host_vars=None, extra_hosts=None):
    """A copy of the lab's inventory (its group_vars and host_vars) with
    host_vars of a test's own added, as a site would set per-host values."""
    shutil.copytree(os.path.join(STATE, "group_vars"), os.path.join(directory, "group_vars"), dirs_exist_ok=True)
    shutil.copytree(os.path.join(STATE, "host_vars"), os.path.join(directory, "host_vars"), dirs_exist_ok=True)
    host_vars = dict(host_vars or {})
    for host in host_vars:
        lab = os.path.join(directory, "host_vars", host + ".yml")
        if os.path.exists(lab):
            with open(lab) as handle:
                host_vars[host] = dict(yaml.safe_load(handle) or {}, **host_vars[host])
            os.unlink(lab)
    with open(INVENTORY) as handle:
        text = handle.read()
    for group, host in (extra_hosts or []):
        text = text.replace("    %s:\n      hosts:\n" % group, "    %s:\n      hosts:\n        %s:\n" % (group, host), 1)
    path = os.path.join(directory, "inventory.yml")
    with open(path, "w") as handle:
        handle.write(text)
    for host, values in (host_vars or {}).items():
        with open(os.path.join(directory, "host_vars", host + ".yml"), "w") as handle:
            json.dump(values, handle)
    return path
