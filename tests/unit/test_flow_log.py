# SPDX-License-Identifier: GPL-3.0-or-later
"""What the decision flow writes to the log, line by line, for each path.

Admins and alert rules read these lines, so their text and level are
behaviour: each scenario below asserts the whole transcript of one login
(every level; syslog then filters by log_level). Where the C module has a
line for the same event, ours has the C module's wording, of the Slurm
version the stepds speak (contribs/pam_slurm_adopt/pam_slurm_adopt.c of
22.05, 25.11 and 26.05); the lines of our own (trust checks, budgets) name
what went wrong and what was applied."""

import os
import socket

import pytest

from slurm_adopt import constants as C
from slurm_adopt.flow import Adopter, _LazyUids, report_option_problems, run_safely
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options

from test_flow import NODE, OTHER_UID, UID, USER, Ctx, adopted, node, node_v1  # noqa: F401 pylint: disable=unused-import

E, I, D, D2, D3 = (C.LOG_LEVEL_ERROR, C.LOG_LEVEL_INFO, C.LOG_LEVEL_DEBUG, C.LOG_LEVEL_DEBUG2,
                   C.LOG_LEVEL_DEBUG3)
PID = 54321
NO_NS_LEGACY = ("No ns_fd given back, expected if not running with a job_container plugin that "
                "supports namespace mounting")
NO_NS_26_05 = ("No ns_fd given back, expected if not running with a namespace plugin that "
               "supports namespace mounting")
FROM = "From 127.0.0.1 port 40000 as %s: " % USER


def head(node, steps):
    """The first lines of every login that reads the config and lists steps."""
    return [(D, "reading %s" % node.conf),
            (D, "%d extern step(s) of node %s in %s" % (steps, NODE, node.spool))]


def adopt_lines(job, no_ns=NO_NS_LEGACY):
    return [(D, "_adopt_process: trying to get StepId=%d.extern to adopt %d" % (job, PID)),
            (D2, no_ns),
            (I, "Process %d adopted into job %d" % (PID, job))]


# -- one job ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0x2600, 0x2A00])
def test_one_job_up_to_25_11(node, version):
    node.job(17, version=version)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS
    assert log.lines == head(node, 1) + [
        (I, "Connection by user %s: user has only one job 17" % USER)] + adopt_lines(17)


def test_one_job_of_26_05(node):
    node.job(17, version=0x2D00)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS
    assert log.lines == head(node, 1) + [
        (D, "uid %d has 1 job(s)" % UID),
        (I, "Newest job 17")] + adopt_lines(17, NO_NS_26_05)


def test_one_job_of_25_11_asks_for_typed_namespaces(node):
    """25.11 already uses REQUEST_GET_NS_FDS but keeps the job_container wording."""
    fake = node.job(17, version=0x2C00)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS and fake.requests[-1] == C.REQUEST_GET_NS_FDS
    assert log.lines[-2:] == adopt_lines(17)[-2:]


def test_refused_adoption(node):
    node.job(17, add_rc=-1)
    rc, ctx, _adopter, log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == head(node, 1) + [
        (I, "Connection by user %s: user has only one job 17" % USER),
        (D, "_adopt_process: trying to get StepId=17.extern to adopt %d" % PID),
        (E, "slurmstepd refused to adopt process %d into job 17 (rc=-1)" % PID),
        (I, "Process %d adoption FAILED for job 17" % PID),
        (I, "send_user_msg: " + C.MSG_ADOPT_FAILED_LEGACY)]
    assert ctx.messages == [C.MSG_ADOPT_FAILED_LEGACY]


def test_refused_adoption_on_26_05(node):
    node.job(17, version=0x2D00, add_rc=-1)
    rc, _ctx, _adopter, log = node.run("action_adopt_failure=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines[-3:] == [
        (I, "Process %d adoption FAILED for job 17" % PID),
        (D, "uid %d failed to adopt StepId=17.extern action_adopt_failure=deny => deny" % UID),
        (I, "send_user_msg: " + C.MSG_ADOPT_FAILED_26_05)]


def test_step_that_ends_while_adopting(node):
    """24.11+: an ending step closes the connection instead of answering."""
    node.job(17, version=0x2A00, behaviour="ending")
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS                       # action_adopt_failure=allow
    path = os.path.join(str(node.spool), "%s_17.%d" % (NODE, C.SLURM_EXTERN_CONT))
    assert log.lines[-2:] == [
        (D3, "unable to adopt into StepId=17.extern: slurmstepd %s closed the connection" % path),
        (I, "Process %d adoption FAILED for job 17" % PID)]


def test_x11_failure_is_logged_and_the_adoption_stands(node):
    node.job(17, behaviour="x11-broken", x11=(12, None))
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS
    assert log.lines[-4:] == [
        (D, "_adopt_process: trying to get StepId=17.extern to adopt %d" % PID),
        (E, "stepd_get_x11_display failed: implausible xauthority length %d" % (1 << 30)),
        (D2, NO_NS_LEGACY),
        (I, "Process %d adopted into job 17" % PID)]


def test_setns_failure_up_to_25_05(node):
    r, w = os.pipe()
    try:
        node.job(17, version=0x2600, namespaces=[(0, r)])
        rc, _ctx, _adopter, log = node.run()
    finally:
        os.close(r)
        os.close(w)
    assert rc == C.PAM_SUCCESS                       # action_adopt_failure=allow
    assert log.lines[-2:] == [(E, "setns() failed: Invalid argument"),
                              (I, "Process %d adoption FAILED for job 17" % PID)]


def test_setns_failure_from_25_11_names_the_descriptor_and_type(node):
    r, w = os.pipe()
    try:
        node.job(17, version=0x2D00, namespaces=[(0x00020000, r)])
        rc, _ctx, adopter, log = node.run("action_adopt_failure=deny")
    finally:
        os.close(r)
        os.close(w)
    assert rc == C.PAM_PERM_DENIED and adopter.adopted_job is None
    level, text = log.lines[-4]
    assert level == E
    prefix, _sep, rest = text.partition("(")
    fd, ns_type = rest.split(")")[0].split(", ")
    assert prefix == "setns" and int(fd) > 2 and ns_type == str(0x00020000)
    assert text.endswith(") failed: Invalid argument")


def test_namespace_request_failure(node):
    """The fd reply of 22.05 says -1: stepd_get_ns_fd failed."""
    node.job(17, version=0x2600, behaviour="ns-refused")
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS
    assert log.lines[-2:] == [(E, "stepd_get_ns_fd failed: stepd_get_ns_fd failed"),
                              (I, "Process %d adoption FAILED for job 17" % PID)]


def test_namespaces_under_pam_exec(node):
    r, w = os.pipe()
    ctx = Ctx()
    ctx.can_setns = False
    try:
        node.job(17, version=0x2C00, namespaces=[(0x00020000, r)])
        rc, _ctx, _adopter, log = node.run(ctx=ctx)
    finally:
        os.close(r)
        os.close(w)
    assert rc == C.PAM_SUCCESS
    assert log.lines[-2:] == [(E, "cannot join the job's namespace from a pam_exec helper"),
                              (I, "Process %d adoption FAILED for job 17" % PID)]


def test_dry_run(node):
    fake = node.job(17)
    ctx = Ctx()
    log = Log(to_syslog=False)
    adopter = Adopter(parse_options(["nodename=" + NODE]), ctx, log, dry_run=True,
                      environ={"SLURM_CONF": str(node.conf)})
    assert run_safely(adopter) == C.PAM_SUCCESS and fake.added == []
    assert adopter.adopted_job == 17
    assert log.lines[-1] == (I, "would adopt process %d into job 17 (dry run)" % PID)


def test_dry_run_of_a_step_that_stops_answering(node):
    fake = node.job(17, behaviour="uid-once")
    ctx = Ctx()
    log = Log(to_syslog=False)
    adopter = Adopter(parse_options(["nodename=" + NODE]), ctx, log, dry_run=True,
                      environ={"SLURM_CONF": str(node.conf)})
    assert run_safely(adopter) == C.PAM_SUCCESS     # action_adopt_failure=allow
    assert adopter.adopted_job is None and fake.added == []
    assert log.lines[-1] == (I, "Process %d adoption FAILED for job 17: slurmstepd %s closed "
                                "the connection" % (PID, fake.path))


# -- no job, refusals before any job ----------------------------------------------------

def test_no_jobs(node):
    node.job(9, uid=OTHER_UID)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == head(node, 1) + [(D, "uid %d owns no jobs => deny" % UID),
                                         (I, "send_user_msg: " + C.MSG_NO_JOBS)]


def test_no_jobs_ignored(node):
    rc, _ctx, _adopter, log = node.run("action_no_jobs=ignore")
    assert rc == C.PAM_IGNORE
    assert log.lines == head(node, 0) + [
        (D, "uid %d owns no jobs but action_no_jobs=ignore" % UID)]


def test_other_service(node):
    rc, _ctx, _adopter, log = node.run(ctx=Ctx(service="login"))
    assert rc == C.PAM_IGNORE
    assert log.lines == [(I, "Not adopting process since this is not an allowed pam service")]


def test_no_service_is_bad_item_without_a_line(node):
    rc, _ctx, _adopter, log = node.run(ctx=Ctx(service=None))
    assert rc == C.PAM_BAD_ITEM and log.lines == []


def test_no_user(node):
    rc, _ctx, _adopter, log = node.run(ctx=Ctx(user=""))
    assert rc == C.PAM_SESSION_ERR
    assert log.lines == [(E, "No username in PAM_USER? Fail!")]


def test_unknown_user(node):
    rc, _ctx, _adopter, log = node.run(ctx=Ctx(user="no-such-user-xyz"))
    assert rc == C.PAM_SESSION_ERR
    assert log.lines == [(E, "getpwnam_r could not locate no-such-user-xyz")]


def test_ignore_root_0_is_overridden_with_the_c_modules_warning(node):
    rc, _ctx, adopter, log = node.run("ignore_root=0", ctx=Ctx(user="root"))
    assert rc == C.PAM_IGNORE and adopter.opts.ignore_root is True
    assert log.lines == [(I, "==============================="),
                         (I, "Danger!!!"),
                         (I, "A crazy admin set ignore_root=0 and some unsafe actions"),
                         (I, "You might lock out root!"),
                         (I, "If this is desirable, modify the source code"),
                         (I, "Setting ignore_root=1 and continuing"),
                         (I, "Ignoring root user")]


def test_broken_config(node):
    node.conf.write_text("NodeName=%s\nthis line is broken\n" % NODE)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == [(D, "reading %s" % node.conf),
                         (E, "%s line 2: cannot parse 'this line is broken'; applying "
                             "action_generic_failure=deny" % node.conf)]


def test_node_name_not_found(node, monkeypatch):
    import slurm_adopt.flow as fm
    import slurm_adopt.slurmconf as sc
    monkeypatch.setattr(sc.socket, "gethostname", lambda: "")
    monkeypatch.setattr(fm.socket, "gethostname", lambda: "")
    node.conf.write_text("NodeName=elsewhere\nSlurmdSpoolDir=%s\n" % node.spool)
    ctx = Ctx()
    log = Log(to_syslog=False)
    rc = run_safely(Adopter(parse_options(["action_generic_failure=deny"]), ctx, log,
                            environ={"SLURM_CONF": str(node.conf)}))
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == [(D, "reading %s" % node.conf),
                         (E, "stepd_available: Couldn't find nodename"),
                         (I, "send_user_msg: " + C.MSG_NO_STEP_LIST)]
    assert ctx.messages == [C.MSG_NO_STEP_LIST]


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777, 0o1777])
def test_spool_dir_writable_by_others(node, mode):
    node.job(17)
    os.chmod(str(node.spool), mode)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=allow")
    assert rc == C.PAM_SUCCESS
    assert log.lines == [
        (D, "reading %s" % node.conf),
        (E, "SlurmdSpoolDir %s is owned by uid 0 with mode %04o: it must belong to root, "
            "SlurmUser or SlurmdUser and not be writable by group or others; not trusting its step "
            "sockets" % (node.spool, mode)),
        (E, "applying action_generic_failure=allow")]


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o700, 0o1755])
def test_spool_dir_modes_that_are_trusted(node, mode):
    fake = node.job(17)
    os.chmod(str(node.spool), mode)
    assert node.run()[0] == C.PAM_SUCCESS and adopted(fake)


def test_spool_dir_of_another_owner(node):
    fake = node.job(17)
    os.chown(str(node.spool), 1, 0)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED and fake.added == []
    assert log.lines[1] == (
        E, "SlurmdSpoolDir %s is owned by uid 1 with mode 0755: it must belong to root, "
           "SlurmUser or SlurmdUser and not be writable by group or others; not trusting its step "
           "sockets" % node.spool)


def test_no_job_of_the_user_but_silent_stepds(node, monkeypatch):
    import slurm_adopt.stepd as stepd_mod
    monkeypatch.setattr(stepd_mod, "STEPD_TIMEOUT", 0.2)
    fake = node.job(30, uid=OTHER_UID, behaviour="stopped")
    rc, ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED and ctx.messages == []
    assert log.lines == head(node, 1) + [
        (E, "slurmstepd %s did not answer within 0.2s; ignoring job 30" % fake.path),
        (E, "uid %d: no job found, but 1 slurmstepd(s) did not answer or could not be trusted; "
            "applying action_generic_failure=deny" % UID)]


def test_a_stale_socket_is_a_debug3_line(node):
    s = socket.socket(socket.AF_UNIX)
    path = str(node.spool / ("%s_90.%d" % (NODE, C.SLURM_EXTERN_CONT)))
    s.bind(path)
    s.close()
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_PERM_DENIED
    assert log.lines[2] == (D3, "unable to determine uid of StepId=90.extern: connect() failed "
                                "for %s: Connection refused" % path)


# -- several jobs ----------------------------------------------------------------------------

def test_rpc_names_the_job(node):
    node.job(20)
    node.job(21)
    rc, _ctx, _adopter, log = node.run(rpc=20)
    assert rc == C.PAM_SUCCESS
    assert log.lines == head(node, 2) + [
        (D, "uid %d has 2 jobs" % UID),
        (D, "Checking file descriptors for network socket"),
        (I, FROM + "member of job 20")] + adopt_lines(20)


def test_rpc_names_a_job_the_user_has_not_here(node):
    node.job(20)
    node.job(22)
    node.job(21, uid=OTHER_UID)
    rc, _ctx, _adopter, log = node.run("action_unknown=deny", rpc=21)
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == head(node, 3) + [
        (D, "uid %d has 2 jobs" % UID),
        (D, "Checking file descriptors for network socket"),
        (I, FROM + "member of job 21"),
        (I, "job 21 is not a job of %s on this node; not adopting into it" % USER),
        (D, "Denying due to action_unknown=deny"),
        (I, "send_user_msg: " + C.MSG_UNKNOWN_SOURCE)]


def test_rpc_adoption_that_fails(node):
    """The job the RPC names refuses the process: no fallback to another job."""
    node.job(20, add_rc=-1)
    other = node.job(21)
    rc, _ctx, _adopter, log = node.run("action_unknown=allow", rpc=20)
    assert rc == C.PAM_SUCCESS and other.added == []
    assert log.lines[-3:] == [
        (E, "slurmstepd refused to adopt process %d into job 20 (rc=-1)" % PID),
        (I, "Process %d adoption FAILED for job 20" % PID),
        (D, "Allowing due to action_unknown=allow")]


def test_rpc_without_an_answer(node):
    node.job(20)
    node.job(21)
    rc, _ctx, _adopter, log = node.run("action_unknown=allow", rpc=C.RpcError("refused"))
    assert rc == C.PAM_SUCCESS
    assert log.lines == head(node, 2) + [
        (D, "uid %d has 2 jobs" % UID),
        (D, "Checking file descriptors for network socket"),
        (D, FROM + "unable to retrieve callerid data from remote slurmd (refused)"),
        (I, FROM + "unable to determine source job"),
        (D, "Allowing due to action_unknown=allow")]


def test_rpc_job_indeterminate(node):
    node.job(20)
    node.job(21)
    rc, ctx, _adopter, log = node.run("action_unknown=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines == head(node, 2) + [
        (D, "uid %d has 2 jobs" % UID),
        (D, "Checking file descriptors for network socket"),
        (D, FROM + "job indeterminate"),
        (I, FROM + "unable to determine source job"),
        (D, "Denying due to action_unknown=deny"),
        (I, "send_user_msg: " + C.MSG_UNKNOWN_SOURCE)]
    assert ctx.messages == [C.MSG_UNKNOWN_SOURCE]


def test_munge_failure(node):
    node.job(20)
    node.job(21)
    rc, _ctx, _adopter, log = node.run("action_unknown=allow", rpc=C.MungeError("no munged"))
    assert rc == C.PAM_SUCCESS
    assert log.lines[-3:] == [(E, FROM + "cannot ask the remote slurmd: no munged"),
                              (I, FROM + "unable to determine source job"),
                              (D, "Allowing due to action_unknown=allow")]


class NoSocket(Ctx):
    def netinfo(self):
        return None


class BrokenNetinfo(Ctx):
    def netinfo(self):
        raise OSError(2, "No such file or directory")


class BadAddress(Ctx):
    def netinfo(self):
        class Conn(object):
            port_src = 1

            @property
            def src_text(self):
                raise ValueError("bad address")
        return Conn()


@pytest.mark.parametrize("ctx,line", [
    (NoSocket(), "callerid_get_own_netinfo unable to find network socket"),
    (BrokenNetinfo(), "callerid_get_own_netinfo unable to find network socket: "
                      "[Errno 2] No such file or directory"),
    (BadAddress(), "inet_ntop failed"),
])
def test_no_network_socket(node, ctx, line):
    node.job(20)
    node.job(21)
    rc, _ctx, _adopter, log = node.run("action_unknown=deny", ctx=ctx)
    assert rc == C.PAM_PERM_DENIED and node.rpc_calls == []
    assert log.lines[-4:] == [(D, "Checking file descriptors for network socket"),
                              (E, line),
                              (D, "Denying due to action_unknown=deny"),
                              (I, "send_user_msg: " + C.MSG_UNKNOWN_SOURCE)]


@pytest.mark.parametrize("extra,what", [("AuthType=auth/slurm", "AuthType=auth/slurm"),
                                        ("AuthType=auth/none", "AuthType=auth/none"),
                                        ("TLSType=tls/s2n", "TLSType=tls/s2n")])
def test_rpc_under_an_unsupported_authentication(node, extra, what):
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\n%s\n" % (NODE, node.spool, extra))
    node.job(20)
    node.job(21)
    rc, _ctx, _adopter, log = node.run("action_unknown=allow", rpc=20)
    assert rc == C.PAM_SUCCESS and node.rpc_calls == []
    assert log.lines[-3:] == [
        (E, FROM + "cannot ask the remote slurmd: %s is not supported by this module" % what),
        (I, FROM + "unable to determine source job"),
        (D, "Allowing due to action_unknown=allow")]


def test_rpc_arguments(node):
    """What the flow hands the RPC: the stepds' version, the conf's port,
    munge socket and MessageTimeout (capped), the budget before the reserve,
    the hash policy."""
    node.conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\nSlurmdPort=7001\nMessageTimeout=60\n"
                         "CommunicationParameters=block_null_hash,block_zero_hash\n"
                         "AuthInfo=socket=/run/munge/other.socket\n" % (NODE, node.spool))
    node.job(20, version=0x2A00)
    node.job(21, version=0x2A00)
    seen = {}
    import time
    import slurm_adopt.flow as fm

    def fake_rpc(conn, port, version, munge_socket, timeout, end, log, **kwargs):
        seen.update(port=port, version=version, munge=munge_socket, timeout=timeout,
                    end=end - time.monotonic(), **kwargs)
        return 21, "remote"
    ctx = Ctx()
    log = Log(to_syslog=False)
    adopter = Adopter(parse_options(["nodename=" + NODE]), ctx, log,
                      environ={"SLURM_CONF": str(node.conf)})
    old = fm.callerid_rpc
    fm.callerid_rpc = fake_rpc
    try:
        assert run_safely(adopter) == C.PAM_SUCCESS and adopter.adopted_job == 21
    finally:
        fm.callerid_rpc = old
    assert seen["port"] == 7001 and seen["version"] == 0x2A00
    assert seen["munge"] == "/run/munge/other.socket"
    assert seen["timeout"] == C.RPC_TIMEOUT_CAP
    budget = C.TOTAL_BUDGET - C.ADOPT_RESERVE
    assert budget - 2 < seen["end"] <= budget
    assert seen["block_zero_hash"] is True and seen["block_null_hash"] is True
    assert 0 in seen["trusted_uids"] and 12345 not in seen["trusted_uids"]


def test_rpc_version_without_any_answer_is_22_05(node):
    """Every stepd answered the uid query, so the version is known; the RPC
    is never sent with version 0."""
    node.job(20, version=0x2700)
    node.job(21, version=0x2700)
    node.run("action_unknown=allow")
    assert node.rpc_calls == [0x2700]


def test_newest_up_to_25_11(node):
    node.job(40)
    node.job(41)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SUCCESS
    assert log.lines == head(node, 2) + [
        (D, "uid %d has 2 jobs" % UID),
        (D, "Checking file descriptors for network socket"),
        (D, FROM + "job indeterminate"),
        (I, FROM + "unable to determine source job"),
        (D, "Detected cgroup version 2"),
        (I, "action_unknown: Picked job 41")] + adopt_lines(41)


def test_newest_of_26_05_with_action_unknown_deny(node):
    node.job(40, version=0x2D00)
    node.job(41, version=0x2D00)
    rc, _ctx, _adopter, log = node.run("action_unknown=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines[-3:] == [
        (I, FROM + "unable to determine source job"),
        (D, "uid %d owns multiple jobs and action_unknown=deny => deny" % UID),
        (I, "send_user_msg: " + C.MSG_UNKNOWN_SOURCE)]
    assert log.lines[2] == (D, "uid %d has 2 job(s)" % UID)


def test_newest_of_26_05_with_action_unknown_allow_is_silent(node):
    a = node.job(40, version=0x2D00)
    b = node.job(41, version=0x2D00)
    rc, ctx, _adopter, log = node.run("action_unknown=allow")
    assert rc == C.PAM_SUCCESS and a.added == [] and b.added == [] and ctx.env == {}
    assert log.lines[-1] == (I, FROM + "unable to determine source job")


def test_every_job_ended_before_the_pick(node):
    node.job(40, behaviour="ends-after-query")
    node.job(41, behaviour="ends-after-query")
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_PERM_DENIED
    assert log.lines[-2:] == [(D, "uid %d owns no jobs => deny" % UID),
                              (I, "send_user_msg: " + C.MSG_NO_JOBS)]


def test_every_job_ended_before_the_pick_with_action_no_jobs_ignore(node):
    """The C module's wording of this path says "allow" (and it returns
    PAM_SUCCESS: success without adoption)."""
    node.job(40, behaviour="ends-after-query")
    node.job(41, behaviour="ends-after-query")
    rc, ctx, _adopter, log = node.run("action_no_jobs=ignore")
    assert rc == C.PAM_SUCCESS and ctx.env == {}
    assert log.lines[-1] == (D, "uid %d owns no jobs but action_no_jobs=allow" % UID)


def test_cgroup_version_unknown_at_the_pick(node):
    (node.tmp / "cgroup.conf").write_text("CgroupPlugin=cgroup/v9\n")
    node.job(70)
    node.job(71)
    rc, _ctx, _adopter, log = node.run()
    assert rc == C.PAM_SESSION_ERR
    assert log.lines[-2:] == [(D, "Detected cgroup version 0"),
                              (E, "cgroup version cannot be determined")]


def test_config_error_at_the_pick_applies_generic_failure(node, monkeypatch):
    import slurm_adopt.flow as fm

    def broken(*_args):
        raise C.ConfigError("cgroup.conf: cannot read")
    monkeypatch.setattr(fm, "pick_newest", broken)
    node.job(70)
    node.job(71)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED
    assert log.lines[-1] == (E, "cgroup.conf: cannot read; applying action_generic_failure=deny")


def test_untrusted_step_socket(node, monkeypatch):
    """A step socket whose peer is not root or a Slurm user: an error line
    naming it, the job skipped, action_generic_failure when nothing is left."""
    import slurm_adopt.stepd as stepd_mod
    fake = node.job(17)
    monkeypatch.setattr(stepd_mod, "peer_uid", lambda sock: 4321)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=deny")
    assert rc == C.PAM_PERM_DENIED and fake.added == []
    assert log.lines == head(node, 1) + [
        (E, "%s is served by uid 4321, not by root or the Slurm user; ignoring job 17"
            % fake.path),
        (E, "uid %d: no job found, but 1 slurmstepd(s) did not answer or could not be trusted; "
            "applying action_generic_failure=deny" % UID)]


def test_unexpected_error(node):
    class Broken(Ctx):
        def netinfo(self):
            raise RuntimeError("boom")
    node.job(100)
    node.job(101)
    rc, _ctx, _adopter, log = node.run("action_generic_failure=allow", ctx=Broken())
    assert rc == C.PAM_SUCCESS
    assert log.lines[-1] == (E, "unexpected error: RuntimeError: boom; applying "
                                "action_generic_failure=allow")


def test_unexpected_error_with_a_broken_log_still_applies_the_action():
    class BrokenLog(Log):
        def error(self, msg):
            raise RuntimeError("log broken too")

    class Exploding(Adopter):
        def run(self):
            raise RuntimeError("boom")
    adopter = Exploding(parse_options(["action_generic_failure=deny"]), Ctx(),
                        BrokenLog(to_syslog=False))
    assert run_safely(adopter) == C.PAM_PERM_DENIED


# -- small pieces ------------------------------------------------------------------------------

def test_report_option_problems_goes_through_pam_syslog_at_err():
    sent = []
    log = Log(process_syslog=lambda priority, text: sent.append((priority, text)))
    opts = parse_options(["action_no_jobs=maybe", "frobnicate"])
    report_option_problems(opts, log, "sshd")
    assert sent == [
        (C.LOG_AUTHPRIV | 3, "pam_slurm_adopt(sshd:account): unrecognized action_no_jobs=maybe, "
                             "setting to 'deny'"),
        (C.LOG_AUTHPRIV | 3, "pam_slurm_adopt(sshd:account): ignoring unrecognized option "
                             "'frobnicate'")]


def test_lazy_uids_resolve_names_only_for_a_non_root_uid(monkeypatch):
    import slurm_adopt.flow as fm
    looked_up = []

    class Pw(object):
        pw_uid = 777

    def getpwnam(name):
        looked_up.append(name)
        if name == "ghost":
            raise KeyError(name)
        return Pw()
    monkeypatch.setattr(fm.pwd, "getpwnam", getpwnam)
    uids = _LazyUids(["slurm", "ghost", "4242"])
    assert 0 in uids and looked_up == []
    assert 777 in uids and 4242 in uids
    assert 778 not in uids and 1 not in uids
    assert looked_up == ["slurm", "ghost"]
    assert uids.uids == {0, 777, 4242}
