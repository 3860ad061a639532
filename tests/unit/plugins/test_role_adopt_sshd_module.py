"""Roles adopt_sshd and adopt_module end to end with ansible-playbook on this
machine, against files below temporary directories only (an sshd_config of
the test's own; a module directory under build/). What the molecule
scenarios cannot reach: Debian's sshd_config already says UsePAM yes, so
the enforce path never runs there, and the container paths are always safe."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, _COLL_ROOT

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'adopt_role_local.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
SSHD = '/usr/sbin/sshd'

pytestmark = pytest.mark.skipif(not os.path.exists(ANSIBLE_PLAYBOOK), reason='ansible-playbook not in the venv')


def play(extra, check=False):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    extra = dict(extra, ansible_python_interpreter=sys.executable)
    cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)]
    if check:
        cmd += ['--check', '--diff']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    return proc.returncode, out['stats']['localhost'], json.dumps(out)


def effective_use_pam(config):
    out = subprocess.run([SSHD, '-T', '-f', config], capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith('usepam ')]


@pytest.fixture
def sshd_dir(tmp_path):
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.fail('needs root and %s (the test suite runs as root on Debian 12)' % SSHD)
    key = tmp_path / 'host_key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    (tmp_path / 'sshd_config.d').mkdir()
    (tmp_path / 'sshd_config.d' / '50-site.conf').write_text('UsePAM no\n')
    (tmp_path / 'sshd_config').write_text(
        'Include %s/sshd_config.d/*.conf\nHostKey %s\nUsePAM no\nMatch User nobody\n    X11Forwarding no\n'
        % (tmp_path, key))
    return tmp_path


def sshd_vars(directory, mode):
    return {'test_role': 'adopt_sshd', 'adopt_sshd_config': str(directory / 'sshd_config'),
            'adopt_sshd_use_pam': mode, 'adopt_sshd_reload': False}


def test_sshd_verify_fails_on_usepam_no(sshd_dir):
    rc, stats, out = play(sshd_vars(sshd_dir, 'verify'))
    assert rc != 0 and stats['failures'] == 1
    assert 'effective UsePAM is no' in out
    assert effective_use_pam(str(sshd_dir / 'sshd_config')) == ['no']


def test_sshd_enforce_fixes_drop_in_and_main_file_then_changes_nothing(sshd_dir):
    config = str(sshd_dir / 'sshd_config')
    rc, stats, _out = play(sshd_vars(sshd_dir, 'enforce'), check=True)
    assert rc == 0 and effective_use_pam(config) == ['no']          # check mode wrote nothing
    rc, stats, _out = play(sshd_vars(sshd_dir, 'enforce'))
    assert rc == 0 and stats['changed'] == 2
    assert effective_use_pam(config) == ['yes']
    assert (sshd_dir / 'sshd_config.d' / '50-site.conf').read_text() == 'UsePAM yes\n'
    main = (sshd_dir / 'sshd_config').read_text()
    assert 'UsePAM yes\nMatch User nobody' in main and 'UsePAM no' not in main
    rc, stats, _out = play(sshd_vars(sshd_dir, 'enforce'))
    assert rc == 0 and stats['changed'] == 0


@pytest.fixture
def module_parent():
    """A root-owned, 0755 parent (build/ of the repository), as the role demands."""
    parent = os.path.join(REPO, 'build', 'role-test-%d' % os.getpid())
    os.makedirs(parent, mode=0o755)
    os.chmod(parent, 0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def module_vars(directory, state='present'):
    return {'test_role': 'adopt_module', 'adopt_module_dir': directory, 'adopt_module_state': state,
            'adopt_module_install_packages': False, 'adopt_module_interface': 'pam_exec'}


def test_module_install_compile_selfcheck_idempotent_and_remove(module_parent):
    target = os.path.join(module_parent, 'slurm-adopt')
    rc, stats, _out = play(module_vars(target))
    assert rc == 0 and stats['changed'] > 0
    pkg = os.path.join(target, 'slurm_adopt')
    shipped = sorted(n for n in os.listdir(os.path.join(REPO, 'roles', 'adopt_module', 'files', 'slurm_adopt'))
                     if n.endswith('.py'))
    assert sorted(n for n in os.listdir(pkg) if n.endswith('.py')) == shipped
    assert oct(os.stat(os.path.join(target, 'pam_slurm_adopt.py')).st_mode & 0o777) == '0o644'
    tag = sys.implementation.cache_tag
    assert sorted(os.listdir(os.path.join(pkg, '__pycache__'))) == sorted(
        n[:-3] + '.' + tag + '.pyc' for n in shipped)
    rc, stats, _out = play(module_vars(target))
    assert rc == 0 and stats['changed'] == 0
    rc, stats, _out = play(module_vars(target, 'absent'))
    assert rc == 0 and not os.path.exists(target)


def test_module_refuses_a_path_below_a_world_writable_directory(tmp_path):
    sticky = tmp_path / 'shared'
    sticky.mkdir()
    os.chmod(str(sticky), 0o1777)
    target = str(sticky / 'slurm-adopt')
    rc, stats, out = play(module_vars(target))
    assert rc != 0 and stats['failures'] == 1
    assert 'not group- or world-writable' in out
    assert not os.path.exists(target)
