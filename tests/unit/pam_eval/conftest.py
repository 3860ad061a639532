# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the real-libpam evaluator tests (tests/unit/pam_eval).

Needs root (mount namespaces) and gcc + libpam0g-dev + libnss-extrausers,
which tests/pam_eval/install.sh installs when missing.  Without root the
tests fail (they never skip silently): set PAM_EVAL_ALLOW_SKIP=1 to skip
them on a developer machine without root.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, 'tests', 'pam_eval'))
sys.path.insert(0, os.path.join(REPO, 'plugins', 'module_utils'))

import pam_eval_harness  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0 and os.environ.get('PAM_EVAL_ALLOW_SKIP') == '1':
        skip = pytest.mark.skip(reason='the PAM evaluator needs root (PAM_EVAL_ALLOW_SKIP=1)')
        for item in items:
            if 'pam_eval' in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def pam_eval_tools():
    """gcc, the PAM headers, libnss-extrausers: installed when missing."""
    if os.geteuid() == 0:
        pam_eval_harness.ensure_tools()


@pytest.fixture(scope='session')
def harness():
    return pam_eval_harness


@pytest.fixture(scope='session')
def standin(tmp_path_factory):
    """Path of the compiled stand-in PAM module."""
    return pam_eval_harness.build_standin(str(tmp_path_factory.mktemp('standin')))
