# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The helpdesk view (playbooks/explain.yml, issue 12 part 4) on the fleet
lab's rolled-out nodes: the deployed options, real jobs, real stepds, the
module's own answer per node, nothing changed.  Runs after tests/fleet/
test_fleet.py (file order): its `rolled_out` fixture rolls the nodes out
again when the scenario's last test removed the rollout.

Run with lab/fleet/test.sh (fresh lab, the fleet tests, teardown)."""

import json
import os
import re

import pytest

from fleetlab import COMPUTE, diff_fingerprints

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
pytestmark = pytest.mark.fleet


def test_explain_answers_with_the_deployed_options_and_changes_nothing(fleet, rolled_out):
    """playbooks/explain.yml (the helpdesk view): fleetalice has a job on
    node1 only: explained as adopted into it on node1, denied with the
    module's message on node2, with the options site.yml deployed
    (action_adopt_failure=deny action_generic_failure=deny, not the module's
    defaults); the JSON form says the same; no node changes."""
    job = fleet.submit("fleetalice", "-w node1")
    before = {node: fleet.fingerprint(node) for node in COMPUTE}
    report = os.path.join(fleet.log_dir, "explain.json")
    res = fleet.playbook("explain", "-e", "user=fleetalice", "-e", "explain_json=%s" % report)
    assert res.rc == 0, res.log
    recap = res.out.split("PLAY RECAP", 1)[1]
    assert set(re.findall(r"changed=(\d+)", recap)) == {"0"}, recap
    with open(report) as handle:
        nodes = {n["host"]: n for n in json.load(handle)["nodes"]}
    assert set(nodes) == {"saf-node1", "saf-node2"}
    deployed = ["action_adopt_failure=deny", "action_generic_failure=deny"]
    # node1 runs the service interface (lab/fleet/host_vars), node2 pam_python
    interface = {"saf-node1": "pam_slurm_adopt_client", "saf-node2": "pam_python"}
    for host, node in nodes.items():
        assert node["error"] is None and node["interface"] == interface[host], node
        assert sorted(node["options"]) == deployed, node
        assert "action_adopt_failure=deny action_generic_failure=deny" in node["transcript"][1], node
    assert nodes["saf-node1"]["decision"] == "PAM_SUCCESS", nodes["saf-node1"]
    assert nodes["saf-node1"]["detail"] == "adopt into job %d" % job, nodes["saf-node1"]
    assert nodes["saf-node2"]["decision"] == "PAM_PERM_DENIED", nodes["saf-node2"]
    assert nodes["saf-node2"]["user_message"] == NO_JOBS
    assert re.search(r"saf-node1\s+PAM_SUCCESS\s+adopt into job %d" % job, res.out), res.out[-3000:]
    for node in COMPUTE:
        assert diff_fingerprints(before[node], fleet.fingerprint(node)) == [], node
