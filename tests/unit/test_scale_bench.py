# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The scale lab's measuring instruments (lab/fleet/scale/): the task_timing
callback on a real ansible-playbook run (three local hosts, a serial play of
batches 1 and 2, a second play), what scale_bench.summarize makes of it, and
the projection's arithmetic."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCALE = os.path.join(REPO, "lab", "fleet", "scale")
sys.path.insert(0, SCALE)

import scale_bench  # noqa: E402  pylint: disable=wrong-import-position

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

PLAYBOOK = """
- name: Roll pam_slurm_adopt out (a stand-in)
  hosts: all
  gather_facts: false
  serial: [1, 2]
  tasks:
    - name: Slow
      ansible.builtin.command: sleep 0.3
      changed_when: false
    - name: Changes
      ansible.builtin.command: "true"
    - name: Never
      ansible.builtin.debug:
        msg: skipped
      when: false
- name: Afterwards
  hosts: all
  gather_facts: false
  tasks:
    - name: Controller only
      ansible.builtin.set_fact:
        x: 1
"""


@pytest.fixture(scope="module")
def timing(tmp_path_factory):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail("ansible-playbook not found next to %s (scripts/venv.sh)" % sys.executable)
    tmp = tmp_path_factory.mktemp("timing")
    (tmp / "pb.yml").write_text(PLAYBOOK)
    out = tmp / "timing.json"
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=os.path.join(SCALE, "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_timing", TASK_TIMING_JSON=str(out), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "saf-scale-node1,saf-scale-node2,saf-scale-node3,",
                           "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
                           str(tmp / "pb.yml")], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return str(out)


def test_callback_records_each_batch_host_and_task(timing):
    with open(timing) as handle:
        raw = json.load(handle)
    # one record per batch of the serial play, then the second play
    assert [p["name"] for p in raw["plays"]] == ["Roll pam_slurm_adopt out (a stand-in)"] * 2 + ["Afterwards"]
    assert all(p["ended"] >= p["started"] for p in raw["plays"])
    slow = [e for e in raw["events"] if e["task"] == "Slow"]
    assert sorted(e["host"] for e in slow) == ["saf-scale-node1", "saf-scale-node2", "saf-scale-node3"]
    assert all(e["ended"] - e["started"] >= 0.3 for e in slow)
    assert {e["status"] for e in raw["events"] if e["task"] == "Changes"} == {"changed"}
    assert {e["status"] for e in raw["events"] if e["task"] == "Never"} == {"skipped"}
    assert raw["stats"]["saf-scale-node2"]["changed"] == 1 and raw["main_cpu"] > 0


def test_summary_batches_tasks_and_changes(timing):
    s = scale_bench.summarize(timing)
    rollout = [b for b in s["batches"] if b["play"].startswith(scale_bench.NODE_PLAYS)]
    assert [b["compute_hosts"] for b in rollout] == [1, 2]
    assert s["compute_nodes"] == 3
    # per node: Slow, Changes, set_fact ran (2 connect), Never skipped
    assert s["node"]["tasks"]["median"] == 3 and s["node"]["remote_tasks"]["median"] == 2
    assert s["node"]["skipped"]["median"] == 1
    assert s["node"]["task_seconds"]["min"] >= 0.3
    assert s["changed"] == 3 and len(s["changed_tasks"]) == 3
    assert s["top_tasks"][0]["task"] == "Slow" and s["top_tasks"][0]["runs"] == 3


def test_projection_arithmetic():
    run = {"n": 1, "controller_cpu": 10.0, "playbook_seconds": 70.0,
           "batches": [{"play": scale_bench.NODE_PLAYS[0], "seconds": 60.0}]}
    # 100 nodes, forks 10, canary 1 then 50 %: batches 1, 50, 49
    p = scale_bench.project(run, 100, 10, 1, 50, 4, main=0.0)
    assert p["batches"] == 3 and p["batch"] == 50
    # canary 60; 50 nodes: max(60 * 5, 10 * 50 / 4 = 125) = 300; 49: 300; other plays 10 s x 10 waves;
    # play 1: 0.052 s x 100
    want = 60 + 300 + 300 + 10 * 10 + scale_bench.PLAY1_CPU_PER_HOST * 100
    assert abs(p["hours"] * 3600 - want) < 36
    # CPU-bound: 1 core -> 10 * 50 = 500 s per big batch
    p = scale_bench.project(run, 100, 10, 1, 50, 1, main=0.0)
    assert abs(p["hours"] * 3600 - (60 + 500 + 490 + 100 + 5.2)) < 36
    # the main process bound: 20 s per node
    p = scale_bench.project(run, 100, 100, 1, 50, 64, main=20.0)
    assert p["hours"] * 3600 > 20 * 99
