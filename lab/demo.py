#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's main job: on the one-node lab (real Slurm 22.05, munge, sshd,
PAM on this machine), show what pam_slurm_adopt.py does over real ssh logins,
next to SchedMD's C module, and print a summary. Exit status 0 only if every
step behaved as it must."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import labctl  # noqa: E402  pylint: disable=wrong-import-position

NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"


def say(text=""):
    print(text, flush=True)


def main():
    lab = labctl.Lab.load("host")
    with lab.lock():
        return demo(lab)


def demo(lab):
    lab.restore_account_line()
    lab.cancel_all()
    say("Lab: Slurm %s node %s; sshd with our module on port %d, with the C module on %d"
        % (lab.slurm_version, lab.nodename, lab.ports["py"], lab.ports["c"]))
    say("Module: %s" % lab.module_path)
    rows = []

    def check(step, kind, result, want_ok, want_job=None, want_msg=None):
        ok = (result.ok == want_ok and (want_job is None or result.job_id == want_job)
              and (want_msg is None or want_msg in result.message))
        where = ("job %s (%s step)" % (result.job_id, result.step)) if result.job_id else "no job"
        shown = result.message.splitlines()[-1] if (not result.ok and result.message) else ""
        rows.append((step, kind, "allowed" if result.ok else "denied", where, shown,
                     "ok" if ok else "WRONG"))
        say("  [%s] %-3s %-7s %-22s %s" % ("ok" if ok else "WRONG", kind,
                                           "allowed" if result.ok else "denied", where, shown))
        return ok

    try:
        say("\n1. alice has one job; she logs in and lands in its extern step")
        alice_job = lab.submit("alice")
        for kind in ("py", "c"):
            check("one job", kind, lab.ssh(kind, "alice"), True, alice_job)

        say("\n2. carol has no job on this node; she is refused")
        for kind in ("py", "c"):
            check("no job", kind, lab.ssh(kind, "carol"), False, None, NO_JOBS)

        say("\n3. bob has two jobs; ssh from inside each job is adopted into that job (callerid RPC)")
        bob_old = lab.submit("bob")
        time.sleep(2.2)
        bob_new = lab.submit("bob")
        for job in (bob_old, bob_new):
            for kind in ("py", "c"):
                check("from inside job %d" % job, kind, lab.ssh(kind, "bob", via_job=job), True, job)

        say("\n4. a process dave starts over ssh dies when his job is cancelled")
        dave_job = lab.submit("dave")
        started = lab.start_background("py", "dave", "exec sleep 4242")
        check("background process", "py", started, True, dave_job)
        lab.cancel(dave_job)
        try:
            lab.wait_pids_gone("dave", "sleep 4242", timeout=30)
            say("  [ok] job %d cancelled: the process started over ssh is gone" % dave_job)
            rows.append(("killed with the job", "py", "", "", "", "ok"))
        except labctl.LabTimeout:
            say("  [WRONG] the process survived the job")
            rows.append(("killed with the job", "py", "", "", "", "WRONG"))

        say("\n5. what the module would decide for bob from a login node (explain, nothing adopted)")
        os.system("SLURM_CONF=%s /usr/bin/python3 %s explain %s --rhost 127.0.0.1 --rport 9"
                  % (lab.slurm_conf, lab.module_path, lab.user("bob")))
    finally:
        lab.cancel_all()

    bad = [r for r in rows if r[-1] != "ok"]
    say("\nSummary: %d checks, %d as expected, %d wrong" % (len(rows), len(rows) - len(bad), len(bad)))
    for row in bad:
        say("  WRONG: %s" % " | ".join(row))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
