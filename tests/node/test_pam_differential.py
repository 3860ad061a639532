# SPDX-License-Identifier: GPL-3.0-or-later
"""Differential through a direct PAM call (tests/node/pamdrv.py): what sshd
hides. Each scenario runs through SchedMD's C module (the oracle, the
lab's own libpam-slurm-adopt) and through ours, in the same run, on the same
jobs, and compares the PAM return code (PAM_IGNORE included), the job the
calling process landed in, the messages, the PAM environment (SLURM_JOB_ID,
DISPLAY, XAUTHORITY) and the module's syslog lines (info and above,
normalised). Key scenarios also have absolute expectations, per Slurm
version where the versions differ. The accepted differences are the ones of
docs/differences.md, each named where it is accepted."""

import pytest
from conftest import touch_job_cgroup

import pamdrv

pytestmark = pytest.mark.node

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
UNKNOWN = "Access denied by pam_slurm_adopt: unable to determine source job"
NO_SOCKET = "error: callerid_get_own_netinfo unable to find network socket"


def version(lab):
    return tuple(int(x) for x in lab.slurm_version.split(".")[:2])


@pytest.fixture(scope="module")
def drv(lab):
    pamdrv.install(lab)
    yield lab
    pamdrv.remove_services(lab)


def run_both(lab, jobs, user, options=(), via=None, **kw):
    got = {}
    normalise = pamdrv.normaliser(lab, jobs)
    for kind in ("c", "py"):
        pamdrv.write_service(lab, kind, options)
        call = pamdrv.call(lab, kind, user, via_job=getattr(jobs, via) if via else None, **kw)
        got[kind] = call.outcome(normalise)
        got[kind]["syslog"] = pamdrv.compared_lines(got[kind]["syslog"])
    if version(lab) < (26, 5):
        # accepted difference 7: up to 25.11 the C module stats a cgroup path
        # that this multiple-slurmd build does not have, once per job, when
        # it picks the "newest" job; ours finds the slurm_<NodeName> one.
        stat = [l for l in got["c"]["syslog"] if l.startswith("Couldn't stat path '")]
        if stat and not any(l.startswith("Couldn't stat") for l in got["py"]["syslog"]):
            assert all("No such file or directory" in l for l in stat), stat
            got["c"]["syslog"] = [l for l in got["c"]["syslog"] if l not in stat]
            got["c"]["cgroup_stat_lines"] = len(stat)
    return got


def adopted(jobs, attr, user_lines=()):
    job = getattr(jobs, attr)
    return {"rc": "PAM_SUCCESS", "job": job, "messages": [],
            "env": {"SLURM_JOB_ID": str(job)}}


def expect(got, **want):
    for key, value in want.items():
        assert got["py"][key] == value, (key, got)


# name, user, options, via, expectations (a function of lab, jobs) or None
SCENARIOS = [
    ("one job", "alice", [], None,
     lambda lab, j: dict(adopted(j, "alice"),
                         syslog=["Connection by user %s: user has only one job <alice>"
                                 % lab.user("alice"), "Process <pid> adopted into job <alice>"]
                         if version(lab) < (26, 5) else
                         ["Newest job <alice>", "Process <pid> adopted into job <alice>"])),
    ("one job, production flags", "alice",
     ["action_adopt_failure=deny", "action_generic_failure=deny"], None,
     lambda lab, j: adopted(j, "alice")),
    ("no job", "carol", [], None,
     lambda lab, j: {"rc": "PAM_PERM_DENIED", "job": None, "messages": [NO_JOBS], "env": {},
                     "syslog": ["send_user_msg: " + NO_JOBS]}),
    ("no job, action_no_jobs=ignore", "carol", ["action_no_jobs=ignore"], None,
     lambda lab, j: {"rc": "PAM_IGNORE", "job": None, "messages": [], "syslog": []}),
    ("other service", "alice", ["service=some-other-service"], None,
     lambda lab, j: {"rc": "PAM_IGNORE", "job": None, "messages": [],
                     "syslog": ["pam_slurm_adopt(adopt-drv:account): Not adopting process since "
                                "this is not an allowed pam service"]}),
    ("empty service=", "alice", ["service="], None,
     lambda lab, j: {"rc": "PAM_IGNORE", "job": None, "messages": []}),
    ("service=*", "alice", ["service=*"], None, lambda lab, j: adopted(j, "alice")),
    ("root", "root", [], None,
     lambda lab, j: {"rc": "PAM_IGNORE", "job": None, "syslog": ["Ignoring root user"]}),
    ("wrong nodename", "alice", ["nodename=not-this-node"], None,
     lambda lab, j: {"rc": "PAM_PERM_DENIED", "job": None, "messages": [NO_JOBS]}),
    ("empty nodename=", "alice", ["nodename="], None,
     lambda lab, j: {"rc": "PAM_PERM_DENIED", "job": None, "messages": [NO_JOBS]}),
    ("single_job_skip_rpc=0", "alice", ["single_job_skip_rpc=0"], None,
     lambda lab, j: adopted(j, "alice")),
    ("single_job_skip_rpc=0, action_unknown=deny", "alice",
     ["single_job_skip_rpc=0", "action_unknown=deny"], None,
     # up to 25.11 action_unknown decides even for one job; 26.05 adopts it
     lambda lab, j: ({"rc": "PAM_PERM_DENIED", "job": None, "messages": [UNKNOWN]}
                     if version(lab) < (26, 5) else adopted(j, "alice"))),
    ("disable_x11 and join_container=false", "alice", ["disable_x11=1", "join_container=false"],
     None, lambda lab, j: adopted(j, "alice")),
    ("log_level=quiet", "alice", ["log_level=quiet"], None,
     lambda lab, j: dict(adopted(j, "alice"), syslog=[])),
    ("empty log_level=", "alice", ["log_level="], None,
     lambda lab, j: dict(adopted(j, "alice"), syslog=[])),
    ("log_level=debug5", "alice", ["log_level=debug5"], None, lambda lab, j: adopted(j, "alice")),
    ("bad value", "alice", ["action_no_jobs=maybe"], None,
     lambda lab, j: dict(adopted(j, "alice"))),
    ("two jobs, action_unknown=deny", "bob", ["action_unknown=deny"], None,
     lambda lab, j: {"rc": "PAM_PERM_DENIED", "job": None, "messages": [UNKNOWN], "env": {}}),
    ("two jobs, action_unknown=allow", "bob", ["action_unknown=allow"], None,
     lambda lab, j: {"rc": "PAM_SUCCESS", "job": None, "messages": [], "env": {}}),
    ("two jobs, from inside the older job", "bob", [], "bob_old",
     lambda lab, j: adopted(j, "bob_old")),
    ("two jobs, from inside the newer job", "bob", [], "bob_new",
     lambda lab, j: adopted(j, "bob_new")),
    ("two jobs, from inside the older job, action_unknown=deny", "bob", ["action_unknown=deny"],
     "bob_old", lambda lab, j: dict(adopted(j, "bob_old"),
                                    syslog=["From 127.0.0.1 port <port> as %s: member of job "
                                            "<bob_old>" % lab.user("bob"),
                                            "Process <pid> adopted into job <bob_old>"])),
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name,user,options,via,want", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_same_pam_outcome_as_the_c_module(drv, jobs, name, user, options, via, want):
    lab = drv
    got = run_both(lab, jobs, user, options, via)
    got["c"].pop("cgroup_stat_lines", None)
    assert got["py"] == got["c"], got
    if want:
        expect(got, **want(lab, jobs))


@pytest.mark.timeout(120)
def test_unknown_option(drv, jobs):
    """Accepted difference 9: 22.05 ignores an unknown option silently (23.02+
    logs it, as we always do)."""
    got = run_both(drv, jobs, "alice", ["frobnicate=yes"])
    line = "pam_slurm_adopt(adopt-drv:account): ignoring unrecognized option 'frobnicate=yes'"
    assert line in got["py"]["syslog"]
    if version(drv) >= (23, 2):
        assert got["py"] == got["c"], got
    else:
        assert line not in got["c"]["syslog"]
        got["c"]["syslog"].insert(got["py"]["syslog"].index(line), line)
        assert got["py"] == got["c"], got


@pytest.mark.timeout(120)
def test_two_jobs_from_outside_newest(drv, jobs):
    """Up to 25.11 under cgroup/v1 the C module stats a path that does not
    exist on Debian's multiple-slurmd build (accepted difference 7): its pick
    and its "Couldn't stat path" lines differ. 26.05's C module sorts by
    socket ctime with a comparator that reads the wrong memory (accepted
    difference 21): its pick is arbitrary; the lines are the same."""
    lab = drv
    touch_job_cgroup(lab, "bob", jobs.bob_new)
    got = run_both(lab, jobs, "bob")
    expect(got, rc="PAM_SUCCESS", job=jobs.bob_new,
           env={"SLURM_JOB_ID": str(jobs.bob_new)}, messages=[])
    assert NO_SOCKET in got["py"]["syslog"]
    if version(lab) >= (26, 5):
        assert got["c"]["rc"] == "PAM_SUCCESS" and got["c"]["job"] in (jobs.bob_old, jobs.bob_new)
        named = [line.replace("<bob_old>", "<bob_new>") for line in got["c"]["syslog"]]
        assert named == got["py"]["syslog"], got
    else:
        assert got["c"]["rc"] == "PAM_SUCCESS" and got["c"]["job"] in (jobs.bob_old, jobs.bob_new)
        assert got["c"]["cgroup_stat_lines"] == 2

        def same(lines):
            return [line.replace("<bob_old>", "<job>").replace("<bob_new>", "<job>")
                    for line in lines]
        assert same(got["c"]["syslog"]) == same(got["py"]["syslog"]), got


@pytest.mark.timeout(120)
def test_callerid_over_ipv6(drv, jobs):
    """The connection comes from ::1 (a client inside bob's older job); both
    modules ask the slurmd at ::1 (CommunicationParameters=EnableIPv6 in the
    labs) and adopt into that job."""
    got = run_both(drv, jobs, "bob", via="bob_old", v6=True)
    assert got["py"] == got["c"], got
    expect(got, **adopted(jobs, "bob_old"))
    assert "From ::1 port <port> as %s: member of job <bob_old>" % drv.user("bob") \
        in got["py"]["syslog"]
