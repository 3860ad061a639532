# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the node tests: real Slurm, real sshd, real PAM.

Each test runs against every lab: ``host`` (Debian 12, Slurm 22.05),
``trixie`` (a Debian 13 chroot, Slurm 24.11) and ``sid`` (a Debian sid
chroot, Slurm 26.05). A lab that is not up skips its tests, unless
ADOPT_LAB_REQUIRED (any non-empty value; `make test` and CI set it) or CI
is set: then a missing lab, or one left out of ADOPT_LABS, is a failure. A
skipped real-Slurm test is a gap.
"""

import os
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "lab"))

import labctl  # noqa: E402  pylint: disable=wrong-import-position

ALL_LABS = ("host", "trixie", "sid")
LAB_NAMES = [n for n in os.environ.get("ADOPT_LABS", ",".join(ALL_LABS)).split(",") if n]
REQUIRED = bool(os.environ.get("ADOPT_LAB_REQUIRED") or os.environ.get("CI"))


def pytest_sessionstart(session):
    missing = [n for n in ALL_LABS if n not in LAB_NAMES]
    if REQUIRED and missing:
        raise pytest.UsageError("ADOPT_LAB_REQUIRED is set but ADOPT_LABS leaves out %s"
                                % ", ".join(missing))


def load_lab(name):
    try:
        lab = labctl.Lab.load(name)
    except labctl.LabError as exc:
        if REQUIRED:
            pytest.fail("lab %s is required but not up: %s" % (name, exc))
        pytest.skip("lab %s is not up: %s" % (name, exc))
    return lab


@pytest.fixture(scope="module", params=LAB_NAMES)
def lab(request):
    lab = load_lab(request.param)
    with lab.lock():              # other test runs must not cancel our jobs meanwhile
        lab.restore_account_line()
        yield lab
        lab.restore_account_line()


class Population(object):
    """Jobs for the scenarios: alice has one, bob two (older, newer), carol none."""

    def __init__(self, lab):
        self.lab = lab
        self.alice = lab.submit("alice")
        self.bob_old = lab.submit("bob")
        time.sleep(2.2)                    # distinct (1 s) cgroup mtimes and socket ctimes
        self.bob_new = lab.submit("bob")


def touch_job_cgroup(lab, user, job):
    """Make job the newest by the cgroup/v1 rule of 22.05-25.11: a new step
    creates a directory in the job's cgroup, which sets its mtime (seconds)."""
    time.sleep(1.1)
    lab.slurm("srun", "--jobid=%d" % job, "--overlap", "-N1", "-n1", "true", user=user)


@pytest.fixture(scope="module")
def jobs(lab):
    lab.cancel_all()
    pop = Population(lab)
    yield pop
    lab.cancel_all(timeout=120)     # after a daemon restart the node may complete slowly
    wait_healthy(lab)


def wait_healthy(lab, timeout=120):
    """Leave the lab as the next test module expects it: slurmctld answering,
    the node idle (not completing), every sshd listening."""
    end = time.monotonic() + timeout
    problems = lab.check()
    while problems and time.monotonic() < end:
        time.sleep(1)
        problems = lab.check()
    assert not problems, "lab %s did not recover: %s" % (lab.name, problems)
