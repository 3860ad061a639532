# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke tests of the trixie lab node (Slurm 24.11 in a chroot, lab/trixie/up.sh).

Only the plain sshd (2301) and SchedMD's C pam_slurm_adopt from Debian 13 (2302) are used,
so these tests prove the lab itself works, independently of the Python module.
Standard library + subprocess only (no dependency on lab/labctl.py).

Skips only when /run/slurm-adopt-lab/trixie.json is absent (fails instead when
ADOPT_LAB_REQUIRED=1, as in CI); a lab with a state file that does not work is a failure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import pytest

import labctl  # lab/ is on sys.path (tests/node/conftest.py)

STATE_FILE = "/run/slurm-adopt-lab/trixie.json"
LOCK_WAIT = 900
NO_JOBS_MSG = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
EXTERN_STEP = 4294967292  # SLURM_EXTERN_CONT (0xfffffffc) since 20.11
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SSH_OPTS = [
    "-F", "/dev/null",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=INFO",
    "-o", "ConnectTimeout=10",
    "-o", "IdentitiesOnly=yes",
]

pytestmark = pytest.mark.node


class Trixie:
    def __init__(self, state: dict):
        self.state = state
        self.root = state["root"]
        self.node = state["nodename"]

    # -- running things -------------------------------------------------------------
    def run(self, argv, user=None, timeout=60, check=True):
        """Run argv inside the chroot (as root, or as `user` through runuser)."""
        cmd = ["chroot", self.root, "env", "-i", "PATH=" + ENV_PATH, "LANG=C.UTF-8"]
        if user:
            cmd += ["runuser", "-u", user, "--"]
        cmd += list(argv)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/",
                           stdin=subprocess.DEVNULL, check=False)
        if check and p.returncode != 0:
            raise AssertionError("%s failed (%d):\nstdout: %s\nstderr: %s"
                                 % (cmd, p.returncode, p.stdout, p.stderr))
        return p

    def ssh(self, variant, user, command, timeout=40):
        """ssh from the host to 127.0.0.1:<port of variant> with the user's lab key."""
        cmd = ["ssh", *SSH_OPTS, "-i", self.state["ssh_keys"][user],
               "-p", str(self.state["ports"][variant]), "%s@127.0.0.1" % user, command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def uid(self, user):
        out = self.run(["id", "-u", user]).stdout.strip()
        return int(out)

    # -- jobs ------------------------------------------------------------------------
    def jobs_of(self, user):
        out = self.run(["squeue", "-h", "-u", user, "-o", "%i"]).stdout.split()
        return [int(j) for j in out]

    def extern_socket(self, job):
        return os.path.join(self.root + self.state["spool_dir"],
                            "%s_%d.%d" % (self.node, job, EXTERN_STEP))

    def submit(self, user, timeout=30):
        out = self.run(["sbatch", "--parsable", "--output=/dev/null", "--chdir=/tmp",
                        "-t", "15", "--wrap", "sleep 600"], user=user).stdout.strip()
        job = int(out.split(";")[0])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.run(["squeue", "-h", "-j", str(job), "-o", "%T"], check=False).stdout.strip()
            if st == "RUNNING" and os.path.exists(self.extern_socket(job)):
                return job
            time.sleep(0.2)
        raise AssertionError("job %d of %s not running with an extern step after %ds (state %r)"
                             % (job, user, timeout, st))

    def cancel(self, jobs, timeout=30):
        jobs = [str(j) for j in jobs]
        if not jobs:
            return
        self.run(["scancel", *jobs], check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)],
                            check=False).stdout.split()
            socks = [j for j in jobs if stepd_listening(self.extern_socket(int(j)))]
            if not left and not socks:
                return
            time.sleep(0.2)
        raise AssertionError("jobs %s still present after scancel" % jobs)


def stepd_listening(path):
    """True if a stepd socket exists and accepts connections.

    Slurm 24.11.5's extern stepd sometimes segfaults when its job is cancelled within about
    a second of an adopted process exiting and leaves the socket behind (connect refused);
    such a socket counts as gone.
    """
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return True
    finally:
        s.close()


def freezer_path(cgroup_text):
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "freezer" in parts[1].split(","):
            return parts[2]
    return None


@pytest.fixture(scope="module")
def lab():
    if not os.path.exists(STATE_FILE):
        msg = "%s absent: trixie lab not up (lab/trixie/up.sh)" % STATE_FILE
        if os.environ.get("ADOPT_LAB_REQUIRED") == "1":
            pytest.fail("ADOPT_LAB_REQUIRED=1 but " + msg)
        pytest.skip(msg)
    with open(STATE_FILE) as f:
        state = json.load(f)
    # The lab's advisory lock (labctl.Lab.lock, the same file lab/trixie/*.sh take), so that
    # concurrent test runs or up/down do not cancel our jobs or restart daemons meanwhile.
    try:
        with labctl.Lab.load("trixie").lock(timeout=LOCK_WAIT):
            yield Trixie(state)
    except labctl.LabTimeout:
        pytest.fail("trixie lab lock busy for %ds" % LOCK_WAIT)


@pytest.fixture
def jobs(lab):
    """Jobs created by a test; cancelled afterwards. Starts with the test users job-free."""
    created = []
    users = [lab.state["users"][k] for k in ("alice", "carol", "dave")]
    lab.cancel([j for u in users for j in lab.jobs_of(u)])
    yield created
    lab.cancel(created)


def test_state_file(lab):
    s = lab.state
    assert s["name"] == "trixie"
    assert s["slurm_version"].startswith("24.11.")
    assert s["nodename"] == "trixie1"
    assert s["ports"] == {"plain": 2301, "c": 2302, "py": 2303}
    assert s["pam_services"] == {"plain": "sshd-lab-plain", "c": "sshd-lab-c", "py": "sshd-lab-py"}
    assert os.path.isfile(os.path.join(s["root"] + s["slurm_conf"]))
    assert os.path.isdir(s["root"] + s["spool_dir"])
    for user in s["users"].values():
        assert os.path.isfile(s["ssh_keys"][user]), user
        # same uid inside the chroot as on the host
        assert lab.uid(user) == int(subprocess.run(["id", "-u", user], capture_output=True,
                                                   text=True, check=True).stdout)
    assert os.path.isfile(s["syslog"])
    out = lab.run(["sinfo", "-V"]).stdout
    assert s["slurm_version"] in out


def test_sinfo_node_idle(lab, jobs):
    out = lab.run(["sinfo", "-h", "-N", "-n", lab.node, "-o", "%N %t"]).stdout.split()
    assert out == [lab.node, "idle"]


def test_plain_login(lab):
    user = lab.state["users"]["bob"]
    p = lab.ssh("plain", user, "id -un; cat /proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == user
    assert "/job_" not in (freezer_path(p.stdout) or "")


def test_c_module_adopts_single_job(lab, jobs):
    user = lab.state["users"]["alice"]
    job = lab.submit(user)
    jobs.append(job)
    log_start = os.path.getsize(lab.state["syslog"])
    p = lab.ssh("c", user, "cat /proc/self/cgroup")
    assert p.returncode == 0, p.stderr
    expect = "/slurm_%s/uid_%d/job_%d/step_extern" % (lab.node, lab.uid(user), job)
    assert freezer_path(p.stdout) == expect, p.stdout
    with open(lab.state["syslog"]) as f:
        f.seek(log_start)
        log = f.read()
    assert re.search(r"pam_slurm_adopt\[\d+\]: Process \d+ adopted into job %d\b" % job, log)


def test_c_module_denies_user_without_job(lab, jobs):
    user = lab.state["users"]["dave"]
    assert lab.jobs_of(user) == []
    p = lab.ssh("c", user, "true")
    assert p.returncode == 255
    assert NO_JOBS_MSG in p.stderr, p.stderr


def test_c_module_callerid_from_older_job(lab, jobs):
    user = lab.state["users"]["carol"]
    older = lab.submit(user)
    jobs.append(older)
    newer = lab.submit(user)
    jobs.append(newer)
    assert older < newer
    ssh = ["ssh", *SSH_OPTS, "-p", str(lab.state["ports"]["c"]), "%s@127.0.0.1" % user,
           "cat /proc/self/cgroup"]
    p = lab.run(["srun", "--jobid=%d" % older, "--overlap", "-N1", "-n1", *ssh],
                user=user, check=False, timeout=60)
    assert p.returncode == 0, p.stderr
    expect = "/slurm_%s/uid_%d/job_%d/step_extern" % (lab.node, lab.uid(user), older)
    assert freezer_path(p.stdout) == expect, p.stdout
