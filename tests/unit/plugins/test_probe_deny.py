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


def probe(phase, answer, tmp_path):
    """Returns (ansible-playbook's rc, the failed task's message, the stand-in's argv or None)."""
    message, rc = answer
    fake_ssh = tmp_path / 'ssh'
    argv_file = tmp_path / 'argv'
    fake_ssh.write_text('#!/bin/sh\nprintf "%%s\\n" "$@" > "%s"\nprintf "%%s\\n" "$FAKE_SSH_STDERR" >&2\nexit %d\n'
                        % (argv_file, rc))
    fake_ssh.chmod(0o755)
    # the site's own ssh arguments, as a site may keep them (quiet: no host key warnings)
    site = [str(fake_ssh), '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR']
    extra = {'test_phase': phase, 'slurm_adopt_probe_deny_user': 'nojob', '__slurm_adopt_ssh': site,
             'ansible_python_interpreter': sys.executable}
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', FAKE_SSH_STDERR=message)
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)],
                          env=env, capture_output=True, text=True, check=False, timeout=300)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    results = [task['hosts']['localhost'] for play in out['plays'] for task in play['tasks']
               if 'localhost' in task['hosts']]
    failed = [r for r in results if r.get('failed')]
    asked = argv_file.read_text().splitlines() if argv_file.exists() else None
    return proc.returncode, (failed[0].get('msg', '') if failed else ''), asked


def test_sshd_s_denial_is_shown_whatever_the_sites_loglevel(tmp_path):
    """ssh takes an option's first value: LogLevel=INFO must come before the
    site's LogLevel=ERROR, or ssh would not print the module's denial."""
    _rc, _msg, asked = probe('after', DENIED, tmp_path)
    assert asked[:2] == ['-o', 'LogLevel=INFO'], asked
    assert asked[-2:] == ['nojob@localhost', 'true'], asked


@pytest.mark.parametrize('phase,answer', [('before', LET_IN), ('before', DENIED), ('after', DENIED)])
def test_passes(phase, answer, tmp_path):
    rc, msg, asked = probe(phase, answer, tmp_path)
    assert rc == 0 and msg == '' and asked, msg


def test_before_a_login_that_cannot_work_stops_the_host(tmp_path):
    rc, msg, asked = probe('before', REFUSED, tmp_path)
    assert rc != 0 and asked
    assert msg.startswith('PROBE CANNOT LOG IN on localhost even before the change, nothing was changed'), msg
    assert 'Permission denied (publickey)' in msg and 'slurm_adopt_probe_deny_user' in msg


def test_after_a_user_let_in_fails(tmp_path):
    rc, msg, asked = probe('after', LET_IN, tmp_path)
    assert rc != 0 and asked
    assert msg == 'nojob (no job) GOT IN to localhost after the change: the adopt rule does not deny', msg


def test_after_a_refusal_that_is_not_the_modules_fails(tmp_path):
    """rc 255 alone (a missing key, an unknown host key) is not the module's denial."""
    rc, msg, asked = probe('after', REFUSED, tmp_path)
    assert rc != 0 and asked
    assert msg.startswith('ssh as nojob to localhost failed after the change, but not with the denial of '
                          'pam_slurm_adopt (rc 255: nojob@node1: Permission denied (publickey).'), msg


def test_removed_phase_does_not_ask(tmp_path):
    """After remove.yml nobody is denied any more: the deny probe is not run."""
    rc, msg, asked = probe('removed', REFUSED, tmp_path)
    assert rc == 0 and msg == '' and asked is None
