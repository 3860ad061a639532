"""Test doubles for the protocol versions and faults a real Slurm cannot give us here."""
