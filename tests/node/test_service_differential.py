# SPDX-License-Identifier: GPL-3.0-or-later
"""The differential suite of tests/node/test_pam_differential.py, through the
service interface: every scenario runs through SchedMD's C module (the
oracle) and through the C client + adoption service, in the same run, on the
same jobs, through the same direct PAM driver (tests/node/pamdrv.py), and
compares the PAM return code (PAM_IGNORE included), the job the calling
process landed in, the messages, the PAM environment and the syslog lines.
The scenarios, their absolute expectations and the accepted differences
are that file's, unchanged: only the "py" driver service loads the client
instead of pam_python."""

import os
import sys

import pytest

import pamdrv
import test_pam_differential as diff

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import service_lab  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def svc(lab):
    with service_lab.ServiceLab(lab) as s:
        yield s


@pytest.fixture
def through_service(svc, monkeypatch):
    """The driver's "py" service loads the client (asking the service)."""
    original = pamdrv.module_line

    def module_line(lab, kind, options=()):
        if kind != "py":
            return original(lab, kind, options)
        return " ".join([svc.client_path("svc"), "service=%s" % pamdrv.SERVICES["py"]]
                        + list(options))
    monkeypatch.setattr(pamdrv, "module_line", module_line)
    pamdrv.install(svc.lab)
    yield svc.lab
    pamdrv.remove_services(svc.lab)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name,user,options,via,want", diff.SCENARIOS,
                         ids=[s[0] for s in diff.SCENARIOS])
def test_service_same_pam_outcome_as_the_c_module(through_service, jobs, name, user, options,
                                                  via, want):
    lab = through_service
    assert pamdrv.module_line(lab, "py").split()[0].endswith("pam_slurm_adopt_client_svc.so")
    got = diff.run_both(lab, jobs, user, options, via)
    got["c"].pop("cgroup_stat_lines", None)
    assert got["py"] == got["c"], got
    if want:
        diff.expect(got, **want(lab, jobs))


@pytest.mark.timeout(120)
def test_service_unknown_option(through_service, jobs):
    diff.test_unknown_option(through_service, jobs)


@pytest.mark.timeout(120)
def test_service_two_jobs_from_outside_newest(through_service, jobs):
    diff.test_two_jobs_from_outside_newest(through_service, jobs)
