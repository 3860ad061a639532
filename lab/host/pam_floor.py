# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The "pam_python floor" of the host lab (sshd-lab-floor, 127.0.0.1:2204).

An account module that does nothing: pam_python loads it exactly as it
loads pam_slurm_adopt.py on the sshd-lab-py stack (libpython, interpreter
start-up, compiling and running this file), so the login latency benchmark
can tell what pam_python itself costs from what the adopt module's own code
costs. Never used outside the lab.
"""


def pam_sm_acct_mgmt(pamh, flags, argv):
    return pamh.PAM_SUCCESS
