# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Node-side implementation of pam_slurm_adopt.py (standard library only).

One module per concern: constants, log, options, slurmconf, stepd, callerid,
newest, flow (the decision flow) and entry (pam_python, pam_exec, explain).
"""

__version__ = "0.1.0"
