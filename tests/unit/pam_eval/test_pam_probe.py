# SPDX-License-Identifier: GPL-3.0-or-later
"""The pam_probe module end to end: ansible-playbook on localhost (AnsiballZ
ships _pam_eval.py inside its zip; the evaluator must re-create itself from
there), check mode, the node's real libpam and modules."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'probe.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


@pytest.fixture(scope='module')
def collections_path():
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not in the venv (scripts/venv.sh installs it)')
    root = tempfile.mkdtemp(prefix='pe-coll-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'hpc'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'hpc', 'slurm_adopt'))
    yield root
    shutil.rmtree(root)


def probe(collections_path, args, check=True):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    extra = {'probe_args': args, 'ansible_python_interpreter': '/usr/bin/python3'}
    cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    task = out['plays'][0]['tasks'][0]['hosts']['localhost']
    return proc.returncode, task


def tree(tmp_path, name, sshd):
    base = tmp_path / name
    (base / 'etc' / 'pam.d').mkdir(parents=True)
    (base / 'etc' / 'pam.d' / 'sshd').write_text(sshd)
    (base / 'etc' / 'pam.d' / 'su').write_text('account required pam_unix.so\n')
    return str(base)


OPEN = 'account required pam_unix.so\n'
ADOPTED = ('account required pam_unix.so\n'
           'account sufficient pam_succeed_if.so quiet user ingroup pe-admins\n'
           'account sufficient pam_succeed_if.so quiet uid eq 0\n'
           'account required pam_deny.so\n')
PROBES = [{'name': 'pe-nojob', 'uid': 64001}, {'name': 'pe-adm', 'uid': 64002, 'groups': ['pe-admins']}]


def test_check_mode_live_tree_answers_for_real(collections_path):
    """On this machine's own /etc/pam.d, in check mode: root passes sshd's
    account stack, a probe user with no stack to stop it passes too, so
    deny fails the task and says who and why."""
    rc, task = probe(collections_path, {'services': ['sshd'], 'allow': ['root'], 'deny': ['pe-nojob'],
                                        'probe_users': PROBES[:1]})
    assert rc != 0 and task['failed']
    assert task['failures'] == ['sshd account pe-nojob: PAM_SUCCESS, must be denied']
    assert [r['rc_name'] for r in task['results']] == ['PAM_SUCCESS', 'PAM_SUCCESS']
    assert 'libpam.so' in task['libpam']
    assert task['changed'] is False


def test_staged_tree_allow_and_deny_pass(collections_path, tmp_path):
    rc, task = probe(collections_path, {'tree': tree(tmp_path, 'after', ADOPTED), 'services': ['sshd'],
                                        'allow': ['root', 'pe-adm'], 'deny': ['pe-nojob'], 'probe_users': PROBES})
    assert rc == 0, task
    assert task['failures'] == [] and task['changed'] is False
    answers = dict((r['query']['user'], r['rc_name']) for r in task['results'])
    assert answers == {'root': 'PAM_SUCCESS', 'pe-adm': 'PAM_SUCCESS', 'pe-nojob': 'PAM_AUTH_ERR'}


def test_compare_tree_reports_only_unallowed_changes(collections_path, tmp_path):
    args = {'tree': tree(tmp_path, 'before', OPEN), 'compare_tree': tree(tmp_path, 'after', ADOPTED),
            'services': ['sshd', 'su'], 'users': ['root', 'pe-nojob', 'pe-adm'], 'probe_users': PROBES,
            'fail_on_violation': False}
    rc, task = probe(collections_path, args)
    assert rc == 0
    assert task['violations'] == ['sshd account pe-nojob: PAM_SUCCESS -> PAM_AUTH_ERR']
    args['allowed_changes'] = [{'service': 'sshd', 'user': 'pe-nojob', 'to': 'deny'}]
    args['fail_on_violation'] = True
    rc, task = probe(collections_path, args)
    assert rc == 0 and task['violations'] == []
    args['allowed_changes'] = [{'service': 'sshd', 'user': 'pe-nojob', 'to': 'allow'}]
    rc, task = probe(collections_path, args)
    assert rc != 0 and 'pe-nojob' in task['msg']


def test_bad_arguments_are_refused(collections_path):
    rc, task = probe(collections_path, {'services': ['sshd']})
    assert rc != 0 and 'at least one user' in task['msg']
    rc, task = probe(collections_path, {'users': ['root'], 'allowed_changes': [{'to': 'maybe'}]})
    assert rc != 0 and 'to must be' in task['msg']
