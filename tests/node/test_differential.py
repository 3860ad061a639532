# SPDX-License-Identifier: GPL-3.0-or-later
"""Differential: the same scenarios through SchedMD's C module (the oracle,
Debian's libpam-slurm-adopt) and through ours, in the same run, on the same
node and jobs. Outcomes compared: allowed or not, the job the session landed
in, and the message shown. The only accepted differences are the ones listed
in docs/differences.md; each is named where it is accepted."""

import json
import os
import re

import pytest
from conftest import touch_job_cgroup

pytestmark = pytest.mark.node

REPORT_DIR = os.environ.get("ADOPT_REPORT_DIR", "build/reports")
_TRUNCATED = set()


def outcome(result):
    messages = sorted(set(re.findall(r"Access denied by pam_slurm_adopt: [^\r\n]*|No Slurm jobs found on node\.",
                                     result.stderr)))
    return {"allowed": result.rc == 0, "job": result.job_id, "messages": messages}


def both(lab, user, options=(), via_job=None):
    got = {}
    for kind in ("c", "py"):
        lab.set_account_options(kind, *options)
        try:
            got[kind] = outcome(lab.ssh(kind, user, via_job=via_job))
        finally:
            lab.restore_account_line(kind)
    return got


def record(lab, name, got):
    os.makedirs(REPORT_DIR, exist_ok=True)
    path = os.path.join(REPORT_DIR, "differential-%s.jsonl" % lab.name)
    mode = "a" if path in _TRUNCATED else "w"          # one report per session
    _TRUNCATED.add(path)
    with open(path, mode) as handle:
        handle.write(json.dumps({"lab": lab.name, "scenario": name, **got}) + "\n")


# name, user (alice: 1 job, bob: 2 jobs, carol: none), options, via_job attribute
SCENARIOS = [
    ("one job", "alice", [], None),
    ("one job, deny-all production flags", "alice",
     ["action_adopt_failure=deny", "action_generic_failure=deny"], None),
    ("one job, single_job_skip_rpc=0", "alice", ["single_job_skip_rpc=0"], None),
    ("one job, single_job_skip_rpc=0, action_unknown=deny", "alice",
     ["single_job_skip_rpc=0", "action_unknown=deny"], None),
    ("one job, disable_x11 and join_container=false", "alice",
     ["disable_x11=1", "join_container=false"], None),
    ("one job, log_level=debug5", "alice", ["log_level=debug5"], None),
    ("one job, unknown option", "alice", ["frobnicate=yes"], None),
    ("one job, bad value", "alice", ["action_no_jobs=maybe"], None),
    ("no job", "carol", [], None),
    ("no job, action_no_jobs=ignore", "carol", ["action_no_jobs=ignore"], None),
    ("other service", "carol", ["service=some-other-service"], None),
    ("service=*", "alice", ["service=*"], None),
    ("wrong nodename", "alice", ["nodename=not-this-node"], None),
    ("two jobs, unknown source, action_unknown=deny", "bob", ["action_unknown=deny"], None),
    ("two jobs, unknown source, action_unknown=allow", "bob", ["action_unknown=allow"], None),
    ("two jobs, from inside the older job", "bob", [], "bob_old"),
    ("two jobs, from inside the newer job", "bob", [], "bob_new"),
    ("two jobs, from inside the older job, action_unknown=deny", "bob",
     ["action_unknown=deny"], "bob_old"),
]


# Absolute expectations (over ssh) for the key scenarios: a mistake both
# modules share must not pass. None: the same as the C module is enough.
EXPECTED_SSH = {
    "one job": lambda j: {"allowed": True, "job": j.alice, "messages": []},
    "no job": lambda j: {"allowed": False, "job": None, "messages": [NO_JOBS]},
    "wrong nodename": lambda j: {"allowed": False, "job": None, "messages": [NO_JOBS]},
    "service=*": lambda j: {"allowed": True, "job": j.alice, "messages": []},
    "two jobs, unknown source, action_unknown=deny":
        lambda j: {"allowed": False, "job": None, "messages": [UNKNOWN]},
    "two jobs, unknown source, action_unknown=allow":
        lambda j: {"allowed": True, "job": None, "messages": []},
    "two jobs, from inside the older job": lambda j: {"allowed": True, "job": j.bob_old,
                                                      "messages": []},
    "two jobs, from inside the newer job": lambda j: {"allowed": True, "job": j.bob_new,
                                                      "messages": []},
    "two jobs, from inside the older job, action_unknown=deny":
        lambda j: {"allowed": True, "job": j.bob_old, "messages": []},
}
NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
UNKNOWN = "Access denied by pam_slurm_adopt: unable to determine source job"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name,user,options,via", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_same_outcome_as_the_c_module(lab, jobs, name, user, options, via):
    via_job = getattr(jobs, via) if via else None
    got = both(lab, user, options, via_job)
    record(lab, name, got)
    assert got["py"] == got["c"], got
    if name in EXPECTED_SSH:
        assert got["py"] == EXPECTED_SSH[name](jobs), got


@pytest.mark.timeout(120)
def test_newest_job_from_outside(lab, jobs):
    """Accepted difference 7 (docs/differences.md): on Debian's multiple-slurmd
    build the C module stats a cgroup path that does not exist, so it takes the
    last job in directory order; ours takes the newest job cgroup."""
    touch_job_cgroup(lab, "bob", jobs.bob_new)
    got = both(lab, "bob")
    record(lab, "two jobs, unknown source, newest", got)
    assert got["py"] == {"allowed": True, "job": jobs.bob_new, "messages": []}
    assert got["c"]["allowed"] and got["c"]["job"] in (jobs.bob_old, jobs.bob_new)
