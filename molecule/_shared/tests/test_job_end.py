# SPDX-License-Identifier: GPL-3.0-or-later
"""An adopted ssh session ends with the job (runs after test_adopt.py)."""

from nodeutil import molecule_hosts, submit_job, wait_for

testinfra_hosts = molecule_hosts()

PIDFILE = "/tmp/molecule-job-end.pid"


def alive(host, pid):
    """True while pid exists (and is not a zombie)."""
    stat = host.run("cat /proc/%d/stat" % pid)
    return stat.rc == 0 and stat.stdout.split(") ", 1)[-1][:1] not in ("Z", "X", "")


def test_cancelling_the_job_kills_the_adopted_session(host):
    job = submit_job(host, "alice", seconds=900)
    pid = 0
    try:
        host.run("rm -f %s" % PIDFILE)
        host.run(
            "runuser -u alice -- ssh -o BatchMode=yes alice@localhost"
            " 'echo $$ > %s; exec sleep 600' >/dev/null 2>&1 &" % PIDFILE
        )
        pidfile = host.file(PIDFILE)
        wait_for("the session's pid", lambda: pidfile.exists and pidfile.content_string.strip())
        pid = int(pidfile.content_string.strip())
        wait_for("pid %d in the extern step" % pid, lambda: pid in job.step_pids("extern"), timeout=20)
        assert alive(host, pid)
    finally:
        host.run("scancel %d" % job.jobid)
    wait_for("job %d to end" % job.jobid, lambda: job.state() == "", timeout=90)
    wait_for("the adopted process %d to be killed" % pid, lambda: not alive(host, pid), timeout=60)
