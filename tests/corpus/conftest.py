# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the PAM corpus test (tests/corpus/test_corpus.py).

The corpus is built by lab/pamcorpus/build.sh (cached Debian chroots with the
real generators, then every tree of manifest.yml rendered into
build/pamcorpus).  A failed build fails every test of the corpus (never a
skip).  Needs root: chroot for the build, mount namespaces for the evaluator.
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, 'lab', 'pamcorpus', 'build.sh')
OUT = os.environ.get('PAMCORPUS_OUT') or os.path.join(REPO, 'build', 'pamcorpus')
RESULTS = os.path.join(os.path.dirname(OUT), 'pamcorpus-results.json')

sys.path.insert(0, os.path.join(REPO, 'tests', 'pam_eval'))
sys.path.insert(0, os.path.join(REPO, 'plugins', 'module_utils'))

# ansible_collections.hpc.slurm_adopt -> this checkout (the editor imports its
# module_utils that way)
_COLL_ROOT = tempfile.mkdtemp(prefix='hpc-coll-')
os.makedirs(os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc'))
os.symlink(REPO, os.path.join(_COLL_ROOT, 'ansible_collections', 'hpc', 'slurm_adopt'))
sys.path.insert(0, _COLL_ROOT)
atexit.register(shutil.rmtree, _COLL_ROOT, True)


@pytest.fixture(scope='session')
def corpus():
    """Directory of the rendered corpus (build/pamcorpus)."""
    if os.geteuid() != 0:
        pytest.fail('the PAM corpus needs root (chroot for the build, mount namespaces for the evaluator)')
    proc = subprocess.run(['bash', BUILD, '--out', OUT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=7200, check=False)
    if proc.returncode != 0:
        pytest.fail('lab/pamcorpus/build.sh failed (exit %d):\n%s' % (proc.returncode, proc.stderr[-6000:]),
                    pytrace=False)
    with open(os.path.join(OUT, 'index.json')) as handle:
        index = json.load(handle)
    return OUT, index


@pytest.fixture(scope='session')
def standin(tmp_path_factory):
    import pam_eval_harness
    return pam_eval_harness.build_standin(str(tmp_path_factory.mktemp('standin')))


_RESULTS = {}


@pytest.fixture(scope='session')
def record():
    """record(name, **facts): what each tree did, merged into
    build/pamcorpus-results.json at the end of the session (tests/corpus/report.py
    prints the table from it)."""
    def put(name, **facts):
        _RESULTS.setdefault(name, {}).update(facts)
    return put


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS:
        return
    merged = {}
    try:
        with open(RESULTS) as handle:
            merged = json.load(handle)          # trees not run this time keep their last result
    except (OSError, ValueError):
        pass
    merged.update(_RESULTS)
    try:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS + '.tmp', 'w') as handle:
            json.dump(merged, handle, indent=1, sort_keys=True)
        os.rename(RESULTS + '.tmp', RESULTS)
    except OSError:
        pass
