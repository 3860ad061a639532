# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decision flow of pam_sm_acct_mgmt."""

import os
import pwd

from .constants import (MSG_ADOPT_FAILED_26_05, MSG_ADOPT_FAILED_LEGACY, MSG_NO_JOBS,
                        MSG_NO_STEP_LIST, MSG_UNKNOWN_SOURCE, NO_VAL, PAM_BAD_ITEM, PAM_IGNORE,
                        PAM_PERM_DENIED, PAM_SESSION_ERR, PAM_SUCCESS, PROTOCOL_22_05,
                        PROTOCOL_26_05, RPC_TIMEOUT_CAP, SLURM_EXTERN_CONT, TOTAL_BUDGET,
                        AdoptError, ConfigError, MungeError, RpcError, StepdError, StepdTimeout)
from .options import ACTION_ALLOW, ACTION_DENY, generic_failure_rc
from .slurmconf import SlurmConfig, find_slurm_conf, guess_nodename
from .stepd import Deadline, StepdConnection, list_steps, setns


def callerid_rpc(conn, port, version, munge_socket, timeout, deadline):
    """callerid.callerid_rpc, imported on first use: only a user with several
    jobs on the node needs it, and the one-job login path should not pay for
    loading it."""
    from .callerid import callerid_rpc as rpc
    return rpc(conn, port, version, munge_socket, timeout, deadline)


def pick_newest(steps, conf, uid, opts, nodename, version, log):
    """newest.pick_newest, imported on first use (see callerid_rpc)."""
    from .newest import pick_newest as pick
    return pick(steps, conf, uid, opts, nodename, version, log)


class PamContext(object):
    """What the flow needs from PAM; implemented for pam_python, pam_exec
    and the explain command."""

    service = None
    user = None
    pid = None          # the process to adopt

    def send_user_msg(self, text):
        raise NotImplementedError

    def putenv(self, name, value):
        raise NotImplementedError

    def netinfo(self):
        raise NotImplementedError


class Adopter(object):
    """One run of the module: options + PAM context -> PAM return code."""

    def __init__(self, opts, ctx, log, dry_run=False, environ=None):
        self.opts = opts
        self.ctx = ctx
        self.log = log
        self.dry_run = dry_run
        self.environ = os.environ if environ is None else environ
        self.deadline = Deadline(TOTAL_BUDGET)
        self.conf = None
        self.nodename = None
        self.version = 0            # newest stepd protocol version seen
        self.adopted_job = None
        self.timed_out_steps = []

    # -- helpers -------------------------------------------------------------
    def user_msg(self, text):
        self.log.info("send_user_msg: %s" % text)
        self.ctx.send_user_msg(text)

    def _adopt_failed_msg(self):
        if self.version >= PROTOCOL_26_05:
            return MSG_ADOPT_FAILED_26_05
        return MSG_ADOPT_FAILED_LEGACY

    def job_uid(self, step):
        """_get_job_uid(): uid of the step's owner, None if the step is gone."""
        try:
            with StepdConnection(step, self.deadline) as conn:
                step.uid = conn.get_uid()
                self.version = max(self.version, conn.protocol_version)
                return step.uid
        except StepdTimeout as exc:
            self.log.error("%s; ignoring job %u" % (exc, step.job_id))
            self.timed_out_steps.append(step)
        except StepdError as exc:
            self.log.debug3("unable to determine uid of StepId=%u.extern: %s" % (step.job_id, exc))
        return None

    def adopt(self, step):
        """_adopt_process(): True when the process is in the job's extern step."""
        pid = self.ctx.pid
        self.log.debug("_adopt_process: trying to get StepId=%u.extern to adopt %d"
                       % (step.job_id, pid))
        if self.dry_run:
            try:
                with StepdConnection(step, self.deadline) as conn:
                    conn.get_uid()
            except StepdError as exc:
                self.log.info("Process %d adoption FAILED for job %u: %s" % (pid, step.job_id, exc))
                return False
            self.log.info("would adopt process %d into job %u (dry run)" % (pid, step.job_id))
            self.adopted_job = step.job_id
            return True
        ok = False
        try:
            with StepdConnection(step, self.deadline) as conn:
                self.version = max(self.version, conn.protocol_version)
                rc = conn.add_extern_pid(pid)
                ok = rc == 0
                if not ok:
                    self.log.error("slurmstepd refused to adopt process %d into job %u (rc=%d)"
                                   % (pid, step.job_id, rc))
                else:
                    self.ctx.putenv("SLURM_JOB_ID", "%u" % step.job_id)
                    if not self.opts.disable_x11:
                        display, xauthority = conn.x11_display()
                        if display:
                            self.ctx.putenv("DISPLAY", "localhost:%d.0" % display)
                        if xauthority:
                            self.ctx.putenv("XAUTHORITY", xauthority)
                    if self.opts.join_container:
                        ok = self._join_namespaces(conn)
        except StepdError as exc:
            self.log.debug3("unable to adopt into StepId=%u.extern: %s" % (step.job_id, exc))
            if isinstance(exc, StepdTimeout):
                self.log.error(str(exc))
            ok = False
        if ok:
            self.log.info("Process %d adopted into job %u" % (pid, step.job_id))
            self.adopted_job = step.job_id
        else:
            self.log.info("Process %d adoption FAILED for job %u" % (pid, step.job_id))
        return ok

    def _join_namespaces(self, conn):
        try:
            fds = conn.namespace_fds()
        except StepdError as exc:
            self.log.error("stepd_get_ns_fd failed: %s" % exc)
            return False
        if not fds:
            self.log.debug2("No ns_fd given back, expected if not running with a job_container "
                            "plugin that supports namespace mounting")
            return True
        ok = True
        for ns_type, fd in fds:
            try:
                if not self.ctx.can_setns:
                    self.log.error("cannot join the job's namespace from a pam_exec helper")
                    ok = False
                else:
                    setns(fd, ns_type)
            except OSError as exc:
                self.log.error("setns() failed: %s" % exc.strerror)
                ok = False
            finally:
                os.close(fd)
        return ok

    # -- the flow --------------------------------------------------------------
    def run(self):
        opts, log = self.opts, self.log

        allowed = opts.pam_service or "sshd"
        if allowed != "*":
            service = self.ctx.service
            if service is None:
                return PAM_BAD_ITEM
            if service != allowed:
                log.pam_syslog(6, "Not adopting process since this is not an allowed pam service",
                               service)
                return PAM_IGNORE

        rc = generic_failure_rc(opts)

        user_name = self.ctx.user
        if not user_name:
            log.pam_syslog(3, "No username in PAM_USER? Fail!", self.ctx.service)
            return PAM_SESSION_ERR

        if not opts.ignore_root:
            # The C module's "unsafe config" check; action_no_jobs can never
            # be "allow", so ignore_root=0 is always overridden.
            log.info("===============================")
            log.info("Danger!!!")
            log.info("A crazy admin set ignore_root=0 and some unsafe actions")
            log.info("You might lock out root!")
            log.info("If this is desirable, modify the source code")
            log.info("Setting ignore_root=1 and continuing")
            opts.ignore_root = True

        try:
            pw = pwd.getpwnam(user_name)
        except KeyError:
            log.error("getpwnam_r could not locate %s" % user_name)
            return PAM_SESSION_ERR
        if pw.pw_uid == 0 and opts.ignore_root:
            log.info("Ignoring root user")
            return PAM_IGNORE

        # Configuration: after root, so that a broken config never locks root out.
        try:
            path = find_slurm_conf(self.environ)
            log.debug("reading %s" % path)
            self.conf = SlurmConfig.load(path)
        except ConfigError as exc:
            log.error("%s; applying action_generic_failure=%s" % (exc, opts.action_generic_failure))
            return rc

        try:
            self.nodename = opts.node_name or guess_nodename(self.conf, self.environ)
        except ConfigError as exc:
            log.error("%s; applying action_generic_failure=%s" % (exc, opts.action_generic_failure))
            return rc
        if not self.nodename:
            log.error("stepd_available: Couldn't find nodename")
            self.user_msg(MSG_NO_STEP_LIST)
            return rc

        spool = self.conf.spool_dir(self.nodename)
        steps = [s for s in list_steps(spool, self.nodename, log) if s.step_id == SLURM_EXTERN_CONT]
        log.debug("%d extern step(s) of node %s in %s" % (len(steps), self.nodename, spool))
        user_steps = [s for s in steps if self.job_uid(s) == pw.pw_uid]

        if not user_steps and self.timed_out_steps:
            log.error("uid %u: no job found, but %d slurmstepd(s) did not answer; applying "
                      "action_generic_failure=%s" % (pw.pw_uid, len(self.timed_out_steps),
                                                     opts.action_generic_failure))
            return rc

        if not user_steps:
            if opts.action_no_jobs == ACTION_DENY:
                log.debug("uid %u owns no jobs => deny" % pw.pw_uid)
                self.user_msg(MSG_NO_JOBS)
                return PAM_PERM_DENIED
            log.debug("uid %u owns no jobs but action_no_jobs=ignore" % pw.pw_uid)
            return PAM_IGNORE

        log.debug("uid %u has %d job(s)" % (pw.pw_uid, len(user_steps)))
        if self.version >= PROTOCOL_26_05:
            return self._decide_26_05(pw, user_steps)
        return self._decide_legacy(pw, user_steps)

    def _decide_legacy(self, pw, user_steps):
        """22.05 ... 25.11."""
        opts, log = self.opts, self.log
        if len(user_steps) == 1 and opts.single_job_skip_rpc:
            step = user_steps[-1]
            log.info("Connection by user %s: user has only one job %u" % (pw.pw_name, step.job_id))
            if self.adopt(step) or opts.action_adopt_failure == ACTION_ALLOW:
                return PAM_SUCCESS
            self.user_msg(MSG_ADOPT_FAILED_LEGACY)
            return PAM_PERM_DENIED

        if self.try_rpc(pw, user_steps) == PAM_SUCCESS:
            return PAM_SUCCESS

        if opts.action_unknown == ACTION_ALLOW:
            log.debug("Allowing due to action_unknown=allow")
            return PAM_SUCCESS
        if opts.action_unknown == ACTION_DENY:
            log.debug("Denying due to action_unknown=deny")
            self.user_msg(MSG_UNKNOWN_SOURCE)
            return PAM_PERM_DENIED
        try:
            step = pick_newest(user_steps, self.conf, pw.pw_uid, opts, self.nodename,
                               self.version, log)
        except AdoptError as exc:
            log.error(str(exc))
            return PAM_SESSION_ERR
        log.info("action_unknown: Picked job %u" % step.job_id)
        if self.adopt(step) or opts.action_adopt_failure == ACTION_ALLOW:
            return PAM_SUCCESS
        return PAM_PERM_DENIED

    def _decide_26_05(self, pw, user_steps):
        opts, log = self.opts, self.log
        if not opts.single_job_skip_rpc or len(user_steps) > 1:
            if self.try_rpc(pw, user_steps) == PAM_SUCCESS:
                return PAM_SUCCESS
        if len(user_steps) > 1:
            if opts.action_unknown == ACTION_ALLOW:
                return PAM_SUCCESS
            if opts.action_unknown == ACTION_DENY:
                log.debug("uid %u owns multiple jobs and action_unknown=deny => deny" % pw.pw_uid)
                self.user_msg(MSG_UNKNOWN_SOURCE)
                return PAM_PERM_DENIED
        step = pick_newest(user_steps, self.conf, pw.pw_uid, opts, self.nodename, self.version, log)
        log.info("Newest job %u" % step.job_id)
        if self.adopt(step) or opts.action_adopt_failure == ACTION_ALLOW:
            return PAM_SUCCESS
        self.user_msg(MSG_ADOPT_FAILED_26_05)
        return PAM_PERM_DENIED

    def try_rpc(self, pw, user_steps):
        """_try_rpc(): ask the slurmd at the ssh client's address. Only a job
        that belongs to the user and has an extern step here is adopted."""
        log = self.log
        log.debug("Checking file descriptors for network socket")
        try:
            conn = self.ctx.netinfo()
        except (OSError, IOError) as exc:
            log.error("callerid_get_own_netinfo unable to find network socket: %s" % exc)
            return PAM_IGNORE
        if conn is None:
            log.error("callerid_get_own_netinfo unable to find network socket")
            return PAM_IGNORE
        try:
            src = conn.src_text
        except (ValueError, OSError):
            log.error("inet_ntop failed")
            return PAM_IGNORE
        version = self.version or PROTOCOL_22_05
        timeout = min(float(self.conf.message_timeout), RPC_TIMEOUT_CAP)
        try:
            job_id, _remote = callerid_rpc(conn, self.conf.slurmd_port, version,
                                           self.conf.munge_socket, timeout, self.deadline)
        except MungeError as exc:
            log.error("From %s port %d as %s: cannot ask the remote slurmd: %s"
                      % (src, conn.port_src, pw.pw_name, exc))
            job_id = NO_VAL
        except (RpcError, StepdTimeout) as exc:
            log.debug("From %s port %d as %s: unable to retrieve callerid data from remote "
                      "slurmd (%s)" % (src, conn.port_src, pw.pw_name, exc))
            job_id = NO_VAL
        else:
            if job_id == NO_VAL:
                log.debug("From %s port %d as %s: job indeterminate"
                          % (src, conn.port_src, pw.pw_name))
        if job_id != NO_VAL:
            log.info("From %s port %d as %s: member of job %u"
                     % (src, conn.port_src, pw.pw_name, job_id))
            mine = [s for s in user_steps if s.job_id == job_id]
            if not mine:
                # The C module adopts into whatever job the remote slurmd
                # names; we only adopt into a job of this user on this node.
                log.info("job %u is not a job of %s on this node; not adopting into it"
                         % (job_id, pw.pw_name))
                return PAM_IGNORE
            return PAM_SUCCESS if self.adopt(mine[0]) else PAM_IGNORE
        log.info("From %s port %d as %s: unable to determine source job"
                 % (src, conn.port_src, pw.pw_name))
        return PAM_IGNORE


def run_safely(adopter):
    """The flow, with every unexpected error turned into the generic-failure
    action: nothing may escape into sshd."""
    try:
        return adopter.run()
    except Exception as exc:   # pylint: disable=broad-except
        try:
            adopter.log.error("unexpected error: %s: %s; applying action_generic_failure=%s"
                              % (type(exc).__name__, exc, adopter.opts.action_generic_failure))
        except Exception:      # pylint: disable=broad-except
            pass
        return generic_failure_rc(adopter.opts)


def report_option_problems(opts, log, service):
    for _option, text in opts.problems:
        log.pam_syslog(3, text, service)
