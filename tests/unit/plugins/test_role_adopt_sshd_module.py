# SPDX-License-Identifier: GPL-3.0-or-later
"""Roles adopt_sshd and adopt_module end to end with ansible-playbook on this
machine, against files below temporary directories only (an sshd_config of
the test's own; a module directory below a root-owned scratch directory that
the test creates outside the checkout and outside /tmp, so that a clone
anywhere, /tmp included, passes). What the molecule scenarios cannot reach:
Debian's sshd_config already says UsePAM yes, so the enforce path never runs
there, and the container paths are always safe."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import REPO, _COLL_ROOT

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'adopt_role_local.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
SSHD = '/usr/sbin/sshd'
MODULE_FILES = os.path.join(REPO, 'roles', 'adopt_module', 'files')


@pytest.fixture(autouse=True)
def _needs_ansible_playbook():
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not next to %s: run the tests with the venv of scripts/venv.sh'
                    % sys.executable)


def play(extra, check=False, collections=_COLL_ROOT):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR='1',
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


def test_sshd_enforce_fails_when_another_include_still_says_no(sshd_dir):
    """A site's own Include outside sshd_config.d, read before the main
    file's line, keeps UsePAM no: the role edits what it may, then its final
    check of the effective value must stop the run (sshd would never ask PAM)."""
    other = sshd_dir / 'site-includes'
    other.mkdir()
    (other / '00-hardening.conf').write_text('UsePAM no\n')
    config = sshd_dir / 'sshd_config'
    config.write_text('Include %s/*.conf\n' % other + config.read_text())
    rc, stats, out = play(sshd_vars(sshd_dir, 'enforce'))
    assert rc != 0 and stats['failures'] == 1, out[-2000:]
    assert 'UsePAM is still not yes' in out, out[-2000:]
    assert effective_use_pam(str(config)) == ['no']


# ---------------------------------------------------------------------------
# adopt_module
# ---------------------------------------------------------------------------

@pytest.fixture
def safe_base():
    """A root-owned 0755 scratch directory whose ancestors (/, /var, /var/lib)
    are root-owned and not group/world-writable: where the checkout lives
    (a clone under /tmp, a home directory) does not matter."""
    if os.geteuid() != 0:
        pytest.fail('needs root (the role installs root-owned files)')
    base = tempfile.mkdtemp(prefix='hpc-slurm-adopt-test-', dir='/var/lib')
    os.chmod(base, 0o755)
    os.mkdir(os.path.join(base, 'pam.d'))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def module_vars(directory, state='present', **more):
    out = {'test_role': 'adopt_module', 'adopt_module_dir': directory, 'adopt_module_state': state,
           'adopt_module_install_packages': False, 'adopt_module_interface': 'pam_exec',
           'adopt_module_pam_dir': os.path.join(os.path.dirname(directory), 'pam.d')}
    out.update(more)
    return out


def _shipped():
    return sorted(n for n in os.listdir(os.path.join(MODULE_FILES, 'slurm_adopt')) if n.endswith('.py'))


def test_module_install_compile_selfcheck_idempotent_and_remove(safe_base):
    target = os.path.join(safe_base, 'slurm-adopt')
    rc, stats, _out = play(module_vars(target), check=True)
    assert rc == 0 and stats['changed'] > 0 and not os.path.exists(target)   # check mode writes nothing
    rc, stats, _out = play(module_vars(target))
    assert rc == 0 and stats['changed'] > 0
    # the stable paths PAM names are links into the active release
    assert os.readlink(os.path.join(target, 'pam_slurm_adopt.py')) == 'current/pam_slurm_adopt.py'
    assert os.readlink(os.path.join(target, 'slurm_adopt')) == 'current/slurm_adopt'
    release = os.readlink(os.path.join(target, 'current'))
    assert release.startswith('releases/') and not os.path.lexists(os.path.join(target, 'previous'))
    pkg = os.path.join(target, 'slurm_adopt')
    assert sorted(n for n in os.listdir(pkg) if n.endswith('.py')) == _shipped()
    for name in ['pam_slurm_adopt.py'] + ['slurm_adopt/' + n for n in _shipped()]:
        path = os.path.join(target, name)
        st = os.stat(path)
        assert (st.st_uid, oct(st.st_mode & 0o777)) == (0, '0o644'), name
        with open(path, 'rb') as mine, open(os.path.join(MODULE_FILES, name), 'rb') as theirs:
            assert mine.read() == theirs.read(), name
    tag = sys.implementation.cache_tag
    assert sorted(os.listdir(os.path.join(pkg, '__pycache__'))) == sorted(
        n[:-3] + '.' + tag + '.pyc' for n in _shipped())
    out = subprocess.run([sys.executable, os.path.join(target, 'pam_slurm_adopt.py'), 'self-check'],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and 'self-check ok' in out.stdout, out
    rc, stats, _out = play(module_vars(target))
    assert rc == 0 and stats['changed'] == 0
    rc, stats, _out = play(module_vars(target, 'absent'))
    assert rc == 0 and not os.path.exists(target)


@pytest.mark.parametrize('problem', ['o+w', 'g+w', 'not root'])
def test_module_refuses_a_path_a_non_root_user_could_replace(safe_base, problem):
    """Each property alone makes the role refuse, and the message names the
    directory that has it (not some other ancestor such as /tmp)."""
    shared = os.path.join(safe_base, 'shared')
    os.mkdir(shared)
    os.chmod(shared, {'o+w': 0o757, 'g+w': 0o775, 'not root': 0o755}[problem])
    if problem == 'not root':
        os.chown(shared, 65534, 65534)
    target = os.path.join(shared, 'slurm-adopt')
    rc, stats, out = play(module_vars(target))
    assert rc != 0 and stats['failures'] == 1
    assert '"msg": "%s (uid=' % shared in out, out[-2000:]
    assert 'must be a directory owned by root and not group- or world-writable' in out, out[-2000:]
    assert not os.path.exists(target)


def test_module_removal_is_refused_while_pam_loads_it(safe_base):
    """A PAM rule (here through a symlinked file, as RHEL's password-auth ->
    /etc/authselect/password-auth) still runs the module: removal must stop
    with the file's name and leave the module in place; a commented-out rule
    does not count."""
    target = os.path.join(safe_base, 'slurm-adopt')
    pamd = os.path.join(safe_base, 'pam.d')
    authselect = os.path.join(safe_base, 'authselect')
    os.mkdir(authselect)
    with open(os.path.join(authselect, 'password-auth'), 'w') as handle:
        handle.write('account required pam_unix.so\n'
                     'account sufficient pam_python.so %s/pam_slurm_adopt.py\n' % target)
    os.symlink(os.path.join(authselect, 'password-auth'), os.path.join(pamd, 'password-auth'))
    rc, _stats, _out = play(module_vars(target))
    assert rc == 0
    rc, stats, out = play(module_vars(target, 'absent'))
    assert rc != 0 and stats['failures'] == 1
    assert '%s/password-auth still load the module' % pamd in out, out[-2000:]
    assert os.path.exists(os.path.join(target, 'pam_slurm_adopt.py'))
    with open(os.path.join(authselect, 'password-auth'), 'w') as handle:
        handle.write('account required pam_unix.so\n'
                     '#account sufficient pam_python.so %s/pam_slurm_adopt.py\n' % target)
    rc, _stats, out = play(module_vars(target, 'absent'))
    assert rc == 0, out[-2000:]
    assert not os.path.exists(target)


# ---------------------------------------------------------------------------
# upgrades: one archive into releases/<id>, an atomic switch, the previous kept
# ---------------------------------------------------------------------------

def _collection_with(base, version):
    """A copy of the collection whose module differs in three files (a
    release `version`), as a site's next collection version would.  (With
    the file-by-file copy of releases before 0.2.0 a reader saw thousands of
    mixed views during such an upgrade; with one changed file it cannot.)"""
    root = os.path.join(base, 'coll-%s' % version)
    coll = os.path.join(root, 'ansible_collections', 'hpc', 'slurm_adopt')
    os.makedirs(coll)
    for name in ('galaxy.yml', 'meta', 'plugins'):
        os.symlink(os.path.join(REPO, name), os.path.join(coll, name))
    shutil.copytree(os.path.join(REPO, 'roles', 'adopt_module'), os.path.join(coll, 'roles', 'adopt_module'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('constants.py', 'flow.py', 'stepd.py'):
        with open(os.path.join(coll, 'roles', 'adopt_module', 'files', 'slurm_adopt', name), 'a') as handle:
            handle.write('\nTEST_RELEASE = %r\n' % version)
    return root


def _view(package_path):
    """What one login would import: the package directory resolved once (as
    an import resolves it), every module read through that one directory."""
    fd = os.open(package_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = {}
        for name in sorted(os.listdir(fd)):
            if name.endswith('.py'):
                with open(os.open(name, os.O_RDONLY, dir_fd=fd), 'rb') as handle:
                    out[name] = handle.read()
        return out
    finally:
        os.close(fd)


def test_upgrade_switches_releases_atomically_and_keeps_the_previous(safe_base):
    target = os.path.join(safe_base, 'slurm-adopt')
    v1, v2, v3 = (_collection_with(safe_base, v) for v in ('v1', 'v2', 'v3'))
    rc, _stats, out = play(module_vars(target), collections=v1)
    assert rc == 0, out[-2000:]
    first = os.readlink(os.path.join(target, 'current'))
    package = os.path.join(target, 'slurm_adopt')
    releases = {}
    for version, coll in (('v1', v1), ('v2', v2)):
        src = os.path.join(coll, 'ansible_collections', 'hpc', 'slurm_adopt', 'roles', 'adopt_module', 'files',
                           'slurm_adopt')
        releases[version] = _view(src)
    assert _view(package) == releases['v1']

    # logins during the upgrade: each sees one complete release, never a mix,
    # and the stable paths never disappear
    seen, bad, stop = set(), [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                view = _view(package)
                assert os.path.exists(os.path.join(target, 'pam_slurm_adopt.py'))
            except (OSError, AssertionError) as exc:
                bad.append('missing: %r' % exc)
                continue
            match = [v for v, files in releases.items() if files == view]
            if match:
                seen.add(match[0])
            else:
                bad.append(sorted(n for n in view if view[n] not in [r.get(n) for r in releases.values()]))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        rc, stats, out = play(module_vars(target), collections=v2)
    finally:
        stop.set()
        watcher.join()
    assert rc == 0 and stats['changed'] > 0, out[-2000:]
    assert bad == [], bad[:5]
    assert seen == {'v1', 'v2'}, seen
    second = os.readlink(os.path.join(target, 'current'))
    assert second != first and os.readlink(os.path.join(target, 'previous')) == first
    assert os.path.isfile(os.path.join(target, first, '.installed'))     # kept for a rollback
    assert _view(package) == releases['v2']

    rc, _stats, out = play(module_vars(target), collections=v3)
    assert rc == 0, out[-2000:]
    assert os.readlink(os.path.join(target, 'previous')) == second
    assert sorted(os.listdir(os.path.join(target, 'releases'))) == sorted(
        os.path.basename(p) for p in (second, os.readlink(os.path.join(target, 'current'))))
    rc, stats, _out = play(module_vars(target), collections=v3)
    assert rc == 0 and stats['changed'] == 0


def test_upgrade_from_a_file_by_file_installation(safe_base):
    """A node installed by an earlier version of the role (plain files in
    <dir> and <dir>/slurm_adopt/): the upgrade keeps it as the previous
    release and leaves the stable paths as links."""
    target = os.path.join(safe_base, 'slurm-adopt')
    os.makedirs(os.path.join(target, 'slurm_adopt'))
    shutil.copy(os.path.join(MODULE_FILES, 'pam_slurm_adopt.py'), target)
    for name in _shipped():
        shutil.copy(os.path.join(MODULE_FILES, 'slurm_adopt', name), os.path.join(target, 'slurm_adopt'))
    rc, stats, out = play(module_vars(target))
    assert rc == 0 and stats['changed'] > 0, out[-2000:]
    assert os.readlink(os.path.join(target, 'slurm_adopt')) == 'current/slurm_adopt'
    assert os.readlink(os.path.join(target, 'pam_slurm_adopt.py')) == 'current/pam_slurm_adopt.py'
    assert os.readlink(os.path.join(target, 'previous')) == 'releases/legacy'
    assert sorted(os.listdir(os.path.join(target, 'releases', 'legacy', 'slurm_adopt'))) == _shipped()
    rc, stats, _out = play(module_vars(target))
    assert rc == 0 and stats['changed'] == 0
