# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the node-side module: import it from where the role ships it."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODULE_DIR = os.path.join(REPO, "roles", "adopt_module", "files")
for path in (MODULE_DIR, os.path.dirname(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture
def host_lab():
    """The host lab (real Slurm 22.05, sshd, pam_python), held for one test:
    up, no jobs before and after, the py service's account line restored.
    For node-marked tests; fails instead of skipping when the lab is required."""
    lab_dir = os.path.join(REPO, "lab")
    if lab_dir not in sys.path:
        sys.path.insert(0, lab_dir)
    import labctl  # pylint: disable=import-outside-toplevel
    try:
        lab = labctl.Lab.load("host")
    except labctl.LabError as exc:
        if os.environ.get("ADOPT_LAB_REQUIRED") or os.environ.get("CI"):
            pytest.fail("the host lab is required but not up: %s" % exc)
        pytest.skip("the host lab is not up: %s" % exc)
    with lab.lock():
        lab.ensure_up(timeout=60)
        lab.cancel_all()
        try:
            yield lab
        finally:
            lab.restore_account_line("py")
            lab.cancel_all()
