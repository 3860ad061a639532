# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest hooks of the fleet tests (helpers and fixtures: fleetlab.py)."""

from fleetlab import baseline, fleet, pristine, rolled_out  # noqa: F401  pylint: disable=unused-import


def pytest_configure(config):
    config.addinivalue_line("markers", "fleet: needs the multi-node podman lab (lab/fleet)")
