# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the collection importable as ansible_collections.hpc.slurm_adopt
(the modules import their module_utils that way) and provide fixture roots."""

import atexit
import os
import shutil
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'pamd')
DISTROS = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))

_COLL_ROOT = tempfile.mkdtemp(prefix='hpc-coll-')
os.makedirs(os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc'))
os.symlink(REPO, os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc', 'slurm_adopt'))
sys.path.insert(0, _COLL_ROOT)
atexit.register(shutil.rmtree, _COLL_ROOT, True)

PAM_MODULES = ('pam_python.so', 'pam_exec.so', 'pam_access.so', 'pam_listfile.so', 'pam_unix.so')


def make_root(base, distro, modules=PAM_MODULES, script=True):
    """A node tree: the distro's /etc/pam.d, PAM modules, the adopt script."""
    root = str(base)
    shutil.copytree(os.path.join(FIXTURES, distro), os.path.join(root, 'etc', 'pam.d'))
    secdir = os.path.join(root, 'lib', 'x86_64-linux-gnu', 'security')
    os.makedirs(secdir)
    for name in modules:
        open(os.path.join(secdir, name), 'w').close()
    os.makedirs(os.path.join(root, 'usr', 'bin'))
    open(os.path.join(root, 'usr', 'bin', 'python3'), 'w').close()
    if script:
        os.makedirs(os.path.join(root, 'usr', 'lib', 'slurm-adopt'))
        open(os.path.join(root, 'usr', 'lib', 'slurm-adopt', 'pam_slurm_adopt.py'), 'w').close()
    return root


def snapshot(root, below=('etc',)):
    """{relative path: bytes} of every file (and symlink target) below root/etc."""
    out = {}
    for top in below:
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if os.path.islink(path):
                    out[rel] = ('link', os.readlink(path))
                else:
                    with open(path, 'rb') as handle:
                        out[rel] = handle.read()
    return out


@pytest.fixture
def node(tmp_path):
    def build(distro, **kwargs):
        return make_root(tmp_path / 'root', distro, **kwargs)
    return build
