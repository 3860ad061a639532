# SPDX-License-Identifier: GPL-3.0-or-later
"""The deny probe of role slurm_adopt (tasks/probe.yml), through the real
ansible-playbook, with a stand-in for ssh that answers as a real login would:
let in (rc 0), denied by pam_slurm_adopt (its message, rc 255), or refused
for another reason (no key: rc 255 and ssh's own message). Before the change
the login must work or be the module's denial; after it, only the module's
denial passes: a missing key must not count as "denied"."""

import json
import os
import subprocess
import sys

import pytest

from conftest import _COLL_ROOT

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'probe_deny.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

MODULE_DENIAL = ("Access denied by pam_slurm_adopt: you have no active jobs on this node\n"
                 "Connection closed by 10.0.0.2 port 22")
NO_KEY = "nojob@node1: Permission denied (publickey)."

# what the stand-in prints on stderr and its exit status
LET_IN = ("", 0)
DENIED = (MODULE_DENIAL, 255)
REFUSED = (NO_KEY, 255)


def probe(phase, answer):
    message, rc = answer
    fake_ssh = ['/bin/sh', '-c', 'printf "%s\\n" "$FAKE_SSH_STDERR" >&2; exit ' + str(rc), 'ssh']
    extra = {'test_phase': phase, 'slurm_adopt_probe_deny_user': 'nojob', '__slurm_adopt_ssh': fake_ssh,
             'ansible_python_interpreter': sys.executable}
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', FAKE_SSH_STDERR=message)
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)],
                          env=env, capture_output=True, text=True, check=False, timeout=300)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    results = [task['hosts']['localhost'] for play in out['plays'] for task in play['tasks']
               if 'localhost' in task['hosts']]
    asked = [r for r in results if not r.get('skipped') and r.get('cmd', [None])[0] == '/bin/sh']
    failed = [r for r in results if r.get('failed')]
    return proc.returncode, (failed[0].get('msg', '') if failed else ''), len(asked)


@pytest.mark.parametrize('phase,answer', [('before', LET_IN), ('before', DENIED), ('after', DENIED)])
def test_passes(phase, answer):
    rc, msg, asked = probe(phase, answer)
    assert rc == 0 and msg == '' and asked == 1, msg


def test_before_a_login_that_cannot_work_stops_the_host():
    rc, msg, asked = probe('before', REFUSED)
    assert rc != 0 and asked == 1
    assert msg.startswith('PROBE CANNOT LOG IN on localhost even before the change, nothing was changed'), msg
    assert 'Permission denied (publickey)' in msg and 'slurm_adopt_probe_deny_user' in msg


def test_after_a_user_let_in_fails():
    rc, msg, asked = probe('after', LET_IN)
    assert rc != 0 and asked == 1
    assert msg == 'nojob (no job) GOT IN to localhost after the change: the adopt rule does not deny', msg


def test_after_a_refusal_that_is_not_the_modules_fails():
    """rc 255 alone (a missing key, an unknown host key) is not the module's denial."""
    rc, msg, asked = probe('after', REFUSED)
    assert rc != 0 and asked == 1
    assert msg.startswith('ssh as nojob to localhost failed after the change, but not with the denial of '
                          'pam_slurm_adopt (rc 255: nojob@node1: Permission denied (publickey).'), msg


def test_removed_phase_does_not_ask():
    """After remove.yml nobody is denied any more: the deny probe is not run."""
    rc, msg, asked = probe('removed', REFUSED)
    assert rc == 0 and msg == '' and asked == 0
