# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged fast path's controller side (role slurm_adopt, entry points
converged and record), run by the real ansible-playbook on this machine
(connection local): the fingerprint of a run's inputs, the decision the
module hpc.slurm_adopt.converged takes from it and from the record, which
entry point record writes.  The paths compared, the record's place and the
drift check are a temporary directory's and a stand-in script (extra vars
override the role's internal ones), so nothing of this machine is read as a
node or written."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, _COLL_ROOT

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

PLAY = """---
- name: The fast path's decision on this machine
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Decide
      ansible.builtin.include_role:
        name: hpc.slurm_adopt.slurm_adopt
        tasks_from: converged

    - name: Write what was decided
      ansible.builtin.copy:
        content: "{{ {'fingerprint': __slurm_adopt_fingerprint, 'converged': __slurm_adopt_converged,
                      'reason': __slurm_adopt_fast_reason} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"

    - name: Record, as after a successful full run
      ansible.builtin.include_role:
        name: hpc.slurm_adopt.slurm_adopt
        tasks_from: record
      vars:
        __slurm_adopt_result: adopted
      when: do_record | bool
"""


@pytest.fixture(scope='module', autouse=True)
def _needs_ansible():
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook not found next to %s (scripts/venv.sh)' % sys.executable)


@pytest.fixture
def lab(tmp_path):
    node = tmp_path / 'node'
    (node / 'pam.d').mkdir(parents=True)
    (node / 'pam.d' / 'sshd').write_text('account required pam_unix.so\n')
    check = tmp_path / 'check.py'
    check.write_text('import json\nprint(json.dumps({"checks": [{"check": "logind", "status": "ok", "message": "m"}]}))\n')
    (tmp_path / 'play.yml').write_text(PLAY)
    overrides = {'__slurm_adopt_fast_record': str(tmp_path / 'state' / 'converged.json'),
                 '__slurm_adopt_fast_paths': [str(node)],
                 '__slurm_adopt_fast_units': [],
                 '__slurm_adopt_fast_pending': [str(tmp_path / 'pending')],
                 '__slurm_adopt_fast_check_argv': [sys.executable, str(check)]}
    return tmp_path, overrides


def run(lab_, *extra, do_record=False, collections=_COLL_ROOT):
    tmp_path, overrides = lab_
    out = tmp_path / 'decision.json'
    if out.exists():
        out.unlink()
    args = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', str(tmp_path / 'play.yml'), '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable, '-e', json.dumps(overrides),
            '-e', json.dumps({'out': str(out), 'do_record': do_record})] + list(extra)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_RETRY_FILES_ENABLED='0')
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_fingerprint_and_decision(lab):
    first = run(lab, do_record=True)
    assert not first['converged'] and 'no record' in first['reason'], first
    assert len(first['fingerprint']) == 64
    assert os.path.exists(lab[1]['__slurm_adopt_fast_record'])

    again = run(lab)
    assert again['converged'], again
    assert again['fingerprint'] == first['fingerprint']

    # the batches cannot change what a node ends up like: not in the fingerprint
    batches = run(lab, '-e', 'slurm_adopt_canary=5', '-e', 'slurm_adopt_batch=50%')
    assert batches['converged'] and batches['fingerprint'] == first['fingerprint'], batches

    # any setting of the roles is: an extra admin, a setting of another role
    for setting in ({'adopt_pam_ensure_access_for': ['fleetadmin']}, {'slurm_adopt_admin_group': 'admins'},
                    {'adopt_drift_textfile_dir': ''}):
        other = run(lab, '-e', json.dumps(setting))
        assert not other['converged'] and 'inputs changed' in other['reason'], (setting, other)
        assert other['fingerprint'] != first['fingerprint']

    # so is the connection
    other = run(lab, '-e', 'ansible_become_user=someone')
    assert not other['converged'] and other['fingerprint'] != first['fingerprint'], other

    # switched off: no decision, but the same fingerprint (recorded for the next run)
    off = run(lab, '-e', 'slurm_adopt_fast_converged=false')
    assert not off['converged'] and off['reason'] == 'slurm_adopt_fast_converged is false', off
    assert off['fingerprint'] == first['fingerprint']

    # a changed file below the compared paths
    (lab[0] / 'node' / 'pam.d' / 'sshd').write_text('account required pam_permit.so\n')
    drifted = run(lab)
    assert not drifted['converged'] and 'pam.d/sshd' in drifted['reason'], drifted


def test_another_collection_is_another_fingerprint(lab, tmp_path):
    first = run(lab, do_record=True)
    root = tmp_path / 'coll'
    coll = root / 'ansible_collections' / 'hpc' / 'slurm_adopt'
    for part in ('roles', 'plugins', 'playbooks', 'meta'):
        shutil.copytree(os.path.join(REPO, part), str(coll / part), ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(os.path.join(REPO, 'galaxy.yml'), str(coll / 'galaxy.yml'))
    same = run(lab, collections=str(root))
    assert same['converged'] and same['fingerprint'] == first['fingerprint'], same
    with open(str(coll / 'roles' / 'adopt_module' / 'files' / 'slurm_adopt' / 'constants.py'), 'a') as handle:
        handle.write('\n# another release\n')
    other = run(lab, collections=str(root))
    assert not other['converged'] and other['fingerprint'] != first['fingerprint'], other
