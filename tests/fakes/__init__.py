# SPDX-License-Identifier: GPL-3.0-or-later
"""Test doubles for the protocol versions and faults a real Slurm cannot give us here."""
