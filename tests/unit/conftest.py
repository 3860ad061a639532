# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the node-side module: import it from where the role ships it."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODULE_DIR = os.path.join(REPO, "roles", "adopt_module", "files")
for path in (MODULE_DIR, os.path.dirname(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)
