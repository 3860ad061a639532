# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the image-mode tests; the helpers are in imagelab.py (a
module of its own name: tests/unit has a conftest module too)."""

from imagelab import cached_image  # noqa: F401  (the session fixture)
