# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the image-mode tests (issue 12, part 1): the image root of
lab/image/build.sh, copied per test module; ansible-playbook with
playbooks/image.yml against it; a manifest of every file for byte-for-byte
comparisons."""

import atexit
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PLAYBOOK = os.path.join(REPO, 'playbooks', 'image.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

_COLL_ROOT = tempfile.mkdtemp(prefix='hpc-coll-')
os.makedirs(os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc'))
os.symlink(REPO, os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc', 'slurm_adopt'))
atexit.register(shutil.rmtree, _COLL_ROOT, True)


def build_image():
    """The cached image root (built on first use, ~4 min; a failure fails the
    test: no silent skip)."""
    proc = subprocess.run(['bash', os.path.join(REPO, 'lab', 'image', 'build.sh')], capture_output=True,
                          text=True, timeout=3600, check=False)
    assert proc.returncode == 0, 'lab/image/build.sh failed:\n' + proc.stderr[-3000:]
    return os.path.join(proc.stdout.strip().splitlines()[-1], 'root')


@pytest.fixture(scope='session')
def cached_image():
    if os.geteuid() != 0:
        pytest.fail('image mode tests need root (debootstrap, chroot, mount namespaces)')
    return build_image()


def copy_image(src, dest):
    """A private copy of the image root (cp -a keeps owners, modes, links)."""
    subprocess.run(['cp', '-a', '--reflink=auto', src, dest], check=True, timeout=600)
    return dest


def manifest(root):
    """{path: (type, mode, uid, gid, content digest or link target)} of every
    entry below root: what "byte for byte" compares."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(top, name)
            st = os.lstat(full)
            rel = '/' + os.path.relpath(full, root)
            if stat.S_ISLNK(st.st_mode):
                what = ('link', os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                with open(full, 'rb') as handle:
                    what = ('file', hashlib.sha256(handle.read()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                what = ('dir', None)
            else:
                what = ('other', st.st_rdev)
            out[rel] = (what[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what[1])
    return out


def manifest_diff(before, after):
    lines = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            lines.append('%s: %s -> %s' % (path, before.get(path), after.get(path)))
    return lines


def play(root, extra=None, check=False, expect_rc=0, state='present'):
    """Run playbooks/image.yml; returns (stats of localhost, the JSON output)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    variables = {'slurm_adopt_image_root': root, 'slurm_adopt_image_state': state,
                 'slurm_adopt_admin_group': 'fleetwheel', 'slurm_adopt_image_allow_users': ['fleetops'],
                 'ansible_python_interpreter': sys.executable, 'ansible_become': False}
    variables.update(extra or {})
    cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', PLAYBOOK, '-e', json.dumps(variables)]
    if check:
        cmd += ['--check', '--diff']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=1200)
    try:
        out = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        raise AssertionError('no JSON from ansible-playbook:\n' + proc.stdout[-3000:] + proc.stderr[-3000:])
    assert proc.returncode == expect_rc, failed_tasks(out) + proc.stderr[-2000:]
    return out['stats']['localhost'], out


def failed_tasks(out):
    """The failed tasks of a JSON run, readable."""
    lines = []
    for p in out.get('plays', []):
        for task in p.get('tasks', []):
            res = task.get('hosts', {}).get('localhost', {})
            if res.get('failed') and not res.get('ignore_errors'):
                lines.append('%s: %s' % (task['task']['name'], res.get('msg', '')))
    return '\n'.join(lines) or json.dumps(out.get('stats'))


def changed_tasks(out):
    names = []
    for p in out.get('plays', []):
        for task in p.get('tasks', []):
            res = task.get('hosts', {}).get('localhost', {})
            if res.get('changed'):
                names.append(task['task']['name'])
    return names


def chroot(root, *argv, **kwargs):
    return subprocess.run(['chroot', root] + list(argv), capture_output=True, text=True, check=False,
                          timeout=kwargs.get('timeout', 120))
