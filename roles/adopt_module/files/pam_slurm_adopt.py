# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pam_slurm_adopt.py - a Python reimplementation of Slurm's pam_slurm_adopt.

Loaded by pam_python inside sshd as a PAM *account* module::

    account required pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py \
        action_adopt_failure=deny action_generic_failure=deny

It denies a user who has no job on this node and "adopts" the ssh session of
a user who has one into the job's extern step, with the same options,
decisions, user messages and PAM return codes as SchedMD's C module
(documented differences: docs/differences.md of hpc.slurm_adopt).

The same file is also:

* a pam_exec helper for systems without pam_python::

    account required pam_exec.so stdout /usr/bin/python3 -I -S \
        /usr/lib/slurm-adopt/pam_slurm_adopt.py pam-exec action_adopt_failure=deny

* an administrator's tool that prints what the module would decide, step by
  step, without adopting anything::

    python3 pam_slurm_adopt.py explain USER [--rhost ADDR --rport PORT] [options]

This file stays small on purpose: pam_python compiles it from source at every
login, while the implementation next to it (the slurm_adopt package) is
imported from byte-compiled files.
"""

import os
import sys


def _load(module_path):
    """Import slurm_adopt.entry from the directory of this file, never from
    anywhere a user could influence. The directory is resolved once (the PAM
    line names <dir>/current/, a symlink the rollout switches), so one login
    imports every module from the same release."""
    here = os.path.dirname(os.path.realpath(module_path))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    from slurm_adopt import entry
    return entry


def _unloadable_rc(args):
    """The implementation cannot be imported (a broken install): apply
    action_generic_failure, as for any other failure of the module."""
    action = "ignore"
    for arg in args:
        if arg[:23].lower() == "action_generic_failure=":
            for word in ("allow", "ignore", "deny"):
                if arg[23:23 + len(word)].lower() == word:
                    action = word
    return {"deny": 6, "allow": 0}.get(action, 25)   # PAM_PERM_DENIED, PAM_SUCCESS, PAM_IGNORE


def pam_sm_acct_mgmt(pamh, flags, argv):
    """pam_python's account hook. Nothing may escape into sshd, and no error
    lets a user in unless action_generic_failure says so."""
    try:
        return _load(argv[0]).pam_sm_acct_mgmt(pamh, flags, argv)
    except Exception:          # pylint: disable=broad-except
        return _unloadable_rc(argv[1:])


def main(argv):
    """The command line; a broken install under pam_exec applies
    action_generic_failure (exit 1 for deny, else 0), as under pam_python."""
    try:
        entry = _load(__file__)
    except Exception:          # pylint: disable=broad-except
        if argv[:1] == ["pam-exec"]:
            return 1 if _unloadable_rc(argv[1:]) == 6 else 0
        raise
    return entry.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
