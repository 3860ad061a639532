# SPDX-License-Identifier: GPL-3.0-or-later
"""The syslog normaliser of the node tests' PAM driver (tests/node/pamdrv.py),
which names the jobs in both modules' lines before they are compared: a job
id is replaced where it stands alone, never inside an address (with job 127,
"From 127.0.0.1" once became "From <bob_old>.0.0.1" and failed a differential
test depending only on the lab's job numbering)."""

import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node"))

import pamdrv  # noqa: E402  pylint: disable=wrong-import-position

JOBS = types.SimpleNamespace(alice=12, bob_old=127, bob_new=1)


def normalise(line):
    return pamdrv.normaliser(None, JOBS)(line)


def test_job_ids_are_named():
    assert normalise("From ::1 port 40022 as labbob: member of job 127") == \
        "From ::1 port <port> as labbob: member of job <bob_old>"
    assert normalise("Process 4242 adopted into job 12") == "Process <pid> adopted into job <alice>"
    assert normalise("jobs 127,1.") == "jobs <bob_old>,<bob_new>."


def test_addresses_keep_their_numbers():
    assert normalise("From 127.0.0.1 port 5 as labbob: member of job 127") == \
        "From 127.0.0.1 port <port> as labbob: member of job <bob_old>"
    assert normalise("10.0.1.12 and fe80::1 and 12:34") == "10.0.1.12 and fe80::1 and 12:34"
