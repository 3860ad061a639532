# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Play 1 of site.yml, healthcheck.yml and remove.yml (role slurm_adopt,
tasks_from: inventory, included once): the fixed in-memory groups it fills,
which every later play targets, for a whole inventory, within --limit, and
with slurm_adopt_slurm_conf=skip.  Play 1 connects to no host, so an
inventory of names is enough; the playbooks' own first play is run, followed
by a play of this test that writes the groups out.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, _COLL_ROOT

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
COMPUTE = ['cn%02d' % i for i in range(1, 7)]
LOGIN = ['login1']
CONTROLLER = ['ctl1']
STRAY = ['stray1']      # in the inventory, in none of the Slurm groups


def first_play(playbook):
    """The text of the playbook's first play (up to its second play)."""
    with open(os.path.join(REPO, 'playbooks', playbook)) as handle:
        text = handle.read()
    start = text.index('\n- name:') + 1
    return text[start:text.index('\n- name:', start) + 1]


def run_play1(tmp_path, playbook, limit=None, extra=None):
    inventory = tmp_path / 'inventory.yml'
    lines = ['all:', '  hosts:'] + ['    %s:' % h for h in STRAY] + ['  children:']
    for group, hosts in (('site_compute', COMPUTE), ('site_login', LOGIN), ('site_ctl', CONTROLLER)):
        lines += ['    %s:' % group, '      hosts:'] + ['        %s:' % h for h in hosts]
    inventory.write_text('\n'.join(lines) + '\n')
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(
        'slurm_adopt_compute_group: site_compute\nslurm_adopt_login_group: site_login\n'
        'slurm_adopt_controller_group: site_ctl\nslurm_adopt_canary: 2\nslurm_adopt_batch: "50%"\n')
    out = tmp_path / 'groups.json'
    play = tmp_path / 'play1.yml'
    play.write_text('---\n' + first_play(playbook) + """
- name: Write the fixed groups out (this test)
  hosts: all
  gather_facts: false
  tasks:
    - name: Groups
      ansible.builtin.copy:
        content: "{{ {'compute': groups['slurm_adopt_compute'] | default([]),
                      'protected': groups['slurm_adopt_protected'] | default([]),
                      'slurm_conf': groups['slurm_adopt_slurm_conf_hosts'] | default([]),
                      'other': groups['slurm_adopt_other'] | default([]),
                      'settings': groups['slurm_adopt_settings'] | default([]),
                      'serial': hostvars[groups['slurm_adopt_settings'][0]].__slurm_adopt_serial} | to_json }}"
        dest: %s
        mode: "0600"
      delegate_to: localhost
      run_once: true
""" % out)
    args = [ANSIBLE_PLAYBOOK, '-i', str(inventory), str(play), '-c', 'local',
            '-e', 'ansible_python_interpreter=%s' % sys.executable]
    if limit:
        args += ['--limit', limit]
    args += extra or []
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_RETRY_FILES_ENABLED='0')
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.fixture(scope='module', autouse=True)
def _needs_ansible():
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook not found next to %s (scripts/venv.sh)' % sys.executable)


@pytest.mark.parametrize('playbook, case', [('site.yml', 'all'), ('site.yml', 'limit'), ('site.yml', 'skip'),
                                            ('healthcheck.yml', 'limit'), ('remove.yml', 'limit')])
def test_play1_fills_the_fixed_groups(tmp_path, playbook, case):
    limit = 'cn02:cn05:login1' if case == 'limit' else None
    extra = ['-e', 'slurm_adopt_slurm_conf=skip'] if case == 'skip' else []
    groups, out = run_play1(tmp_path, playbook, limit, extra)
    within = (lambda hosts: [h for h in hosts if h in ('cn02', 'cn05', 'login1')]) if limit else list
    compute, protected = within(COMPUTE), within(LOGIN + CONTROLLER)
    assert sorted(groups['compute']) == sorted(compute)
    assert sorted(groups['protected']) == sorted(protected)
    assert sorted(groups['slurm_conf']) == ([] if case == 'skip' else sorted(compute + protected))
    assert sorted(groups['other']) == sorted(within(STRAY))
    assert len(groups['settings']) == 1 and groups['serial'] == ['2', '50%']
    # play 1 runs once: its role is included for one host, not for each
    included = [line for line in out.splitlines() if line.startswith('included: hpc.slurm_adopt.slurm_adopt for')]
    assert len(included) == 1 and ',' not in included[0], included
