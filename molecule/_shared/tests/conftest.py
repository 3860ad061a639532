# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the shared molecule testinfra suite."""

import pytest
from nodeutil import submit_job, wait_for


@pytest.fixture(scope="module")
def alice_job(host):
    """alice's running job for the module's tests; cancelled afterwards."""
    job = submit_job(host, "alice")
    yield job
    host.run("scancel %d" % job.jobid)
    wait_for("job %d to end" % job.jobid, lambda: job.state() == "", timeout=60)
