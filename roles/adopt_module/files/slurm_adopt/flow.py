# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The decision flow of pam_sm_acct_mgmt."""

import os
import pwd

from . import counters
from .constants import (ADOPT_RESERVE, DNS_TIMEOUT, LOG_LEVEL_ERROR, LOG_LEVEL_FATAL, MSG_ADOPT_FAILED_26_05,
                        MSG_ADOPT_FAILED_LEGACY, MSG_NO_JOBS, MSG_NO_STEP_LIST, MSG_UNKNOWN_SOURCE,
                        NO_VAL, PAM_BAD_ITEM, PAM_IGNORE, PAM_PERM_DENIED, PAM_SESSION_ERR,
                        PAM_SUCCESS, PROTOCOL_22_05, PROTOCOL_25_11, PROTOCOL_26_05,
                        PROTOCOL_VERSIONS,
                        RPC_TIMEOUT_CAP, SLURM_EXTERN_CONT, TOTAL_BUDGET, AdoptError,
                        ConfigError, MungeError, RpcError, StepdError, StepdTimeout)
from .options import ACTION_ALLOW, ACTION_DENY, generic_failure_rc
from .slurmconf import SlurmConfig, canonical_names, find_slurm_conf, legacy_nodename
from .sockets import socket
from .stepd import Deadline, StepdConnection, list_steps, query_steps, setns

# The node-name guess of 23.11 and later ($SLURMD_NODENAME first, the raw
# host name last) is followed when the node's stepds speak 23.11 or later.
PROTOCOL_23_11 = PROTOCOL_VERSIONS["23.11"]


def callerid_rpc(*args, **kwargs):
    """callerid.callerid_rpc, imported on first use: only a user with several
    jobs on the node needs it, and the one-job login path should not pay for
    loading it."""
    from .callerid import callerid_rpc as rpc
    return rpc(*args, **kwargs)


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
    can_setns = True

    def send_user_msg(self, text):
        raise NotImplementedError

    def putenv(self, name, value):
        raise NotImplementedError

    def netinfo(self):
        raise NotImplementedError

    def setns(self, fd, nstype):
        """Join a namespace in the process that called PAM (this one, here;
        the service's client does it inside sshd). OSError as setns(2)."""
        setns(fd, nstype)


class Adopter(object):
    """One run of the module: options + PAM context -> PAM return code."""

    def __init__(self, opts, ctx, log, dry_run=False, environ=None):
        self.opts = opts
        self.ctx = ctx
        self.log = log
        self.dry_run = dry_run
        self.environ = os.environ if environ is None else environ
        self.deadline = Deadline(TOTAL_BUDGET, ADOPT_RESERVE)
        log.deadline = self.deadline
        self.conf = None
        self.nodename = None
        self.version = 0            # newest stepd protocol version seen
        self.adopted_job = None
        self.timed_out_steps = []
        self.untrusted_steps = []
        self.connections = {}       # job id -> open StepdConnection of the user's steps
        self._trusted = None

    # -- helpers -------------------------------------------------------------
    def user_msg(self, text):
        self.log.info("send_user_msg: %s" % text)
        self.ctx.send_user_msg(text)

    def trusted_uids(self):
        """Who may answer on a step socket or sign a callerid reply: root,
        SlurmUser and SlurmdUser (looked up only when a peer is not root)."""
        if self._trusted is None:
            self._trusted = _LazyUids(self.conf.slurm_users() if self.conf else [])
        return self._trusted

    def query(self, steps, keep_uid=None):
        """The uid of each step, asked of all stepds at once; returns the
        steps owned by keep_uid (their connections are kept for the adoption)."""
        mine = []
        for answer in query_steps(steps, self.deadline, self.trusted_uids(), keep_uid):
            step = answer.loc
            if answer.failure is None:
                self.version = max(self.version, answer.version)
                if answer.uid == keep_uid:
                    mine.append(step)
                    if answer.sock is not None:
                        self._keep(step, StepdConnection(step, self.deadline,
                                                         trusted_uids=self.trusted_uids(),
                                                         sock=answer.sock,
                                                         version=answer.version))
            elif answer.failure == "timeout":
                self.log.error("%s; ignoring job %u" % (answer.message, step.job_id))
                self.timed_out_steps.append(step)
            elif answer.failure == "untrusted":
                self.log.error(answer.message)
                self.untrusted_steps.append(step)
            else:
                self.log.debug3("unable to determine uid of StepId=%u.extern: %s"
                                % (step.job_id, answer.message))
        return mine

    def _keep(self, step, conn):
        old = self.connections.pop(step.job_id, None)
        if old is not None:
            old.close()
        self.connections[step.job_id] = conn

    def close(self):
        for conn in self.connections.values():
            conn.close()
        self.connections = {}

    def _connection(self, step):
        """The connection kept from the uid query, else a new one."""
        conn = self.connections.pop(step.job_id, None)
        if conn is None:
            conn = StepdConnection(step, self.deadline, trusted_uids=self.trusted_uids())
        return conn

    def adopt(self, step):
        """_adopt_process(): True when the process is in the job's extern step."""
        pid = self.ctx.pid
        self.log.debug("_adopt_process: trying to get StepId=%u.extern to adopt %d"
                       % (step.job_id, pid))
        if self.dry_run:
            try:
                with self._connection(step) as conn:
                    conn.get_uid()
            except StepdError as exc:
                self.log.info("Process %d adoption FAILED for job %u: %s" % (pid, step.job_id, exc))
                return False
            self.log.info("would adopt process %d into job %u (dry run)" % (pid, step.job_id))
            self.adopted_job = step.job_id
            return True
        ok = False
        conn = self._connection(step)
        try:
            conn.connect()
            self.version = max(self.version, conn.protocol_version)
            rc = conn.add_extern_pid(pid)
            ok = rc == 0
            if not ok:
                self.log.error("slurmstepd refused to adopt process %d into job %u (rc=%d)"
                               % (pid, step.job_id, rc))
            else:
                self.ctx.putenv("SLURM_JOB_ID", "%u" % step.job_id)
                if not self.opts.disable_x11 and not self._x11(conn):
                    # the reply was broken: the stream is out of step, ask anew
                    conn.close()
                    conn = StepdConnection(step, self.deadline, trusted_uids=self.trusted_uids())
                    conn.connect()
                if self.opts.join_container:
                    ok = self._join_namespaces(conn)
        except StepdError as exc:
            self.log.debug3("unable to adopt into StepId=%u.extern: %s" % (step.job_id, exc))
            if isinstance(exc, StepdTimeout):
                self.log.error(str(exc))
            ok = False
        finally:
            conn.close()
        if ok:
            self.log.info("Process %d adopted into job %u" % (pid, step.job_id))
            self.adopted_job = step.job_id
        else:
            self.log.info("Process %d adoption FAILED for job %u" % (pid, step.job_id))
        return ok

    def _x11(self, conn):
        """DISPLAY and XAUTHORITY of the job. A failure here does not undo
        the adoption (the C module swallows it too); it is logged."""
        try:
            display, xauthority = conn.x11_display()
        except StepdError as exc:
            self.log.error("stepd_get_x11_display failed: %s" % exc)
            return False
        if display:
            self.ctx.putenv("DISPLAY", "localhost:%d.0" % display)
        if xauthority:
            self.ctx.putenv("XAUTHORITY", xauthority)
        return True

    def _join_namespaces(self, conn):
        """Join the namespaces the stepd hands over. The lines are worded as
        the C module of the stepd's version words them: REQUEST_GET_NS_FDS
        and setns(fd, type) from 25.11, "namespace plugin" from 26.05."""
        typed = conn.protocol_version >= PROTOCOL_25_11
        try:
            fds = conn.namespace_fds()
        except StepdError as exc:
            call = "stepd_get_ns_fds" if typed else "stepd_get_ns_fd"
            self.log.error("%s failed: %s" % (call, exc))
            return False
        if not fds:
            self.log.debug2("No ns_fd given back, expected if not running with a %s plugin that "
                            "supports namespace mounting"
                            % ("namespace" if conn.protocol_version >= PROTOCOL_26_05
                               else "job_container"))
            return True
        ok = True
        for ns_type, fd in fds:
            try:
                if not ok:
                    continue                # an earlier one failed: only close the rest
                if not self.ctx.can_setns:
                    self.log.error("cannot join the job's namespace from a pam_exec helper")
                    ok = False
                else:
                    self.ctx.setns(fd, ns_type)
            except OSError as exc:
                if typed:
                    self.log.error("setns(%d, %d) failed: %s" % (fd, ns_type, exc.strerror))
                else:
                    self.log.error("setns() failed: %s" % exc.strerror)
                ok = False
            finally:
                os.close(fd)
        return ok

    # -- the node name -------------------------------------------------------
    def node_name(self):
        """The NodeName to look for: nodename= (even empty, as the C module:
        an empty name finds no steps), else the guess of the node's Slurm
        version. 22.05 ... 23.11.3: short host name, aliases, localhost;
        23.11.4+ also $SLURMD_NODENAME first and the raw host name last.
        The version is the one of the stepds found under the candidate name;
        with none to ask, the newer rule applies."""
        if self.opts.node_name is not None:
            return self.opts.node_name
        env_name = self.environ.get("SLURMD_NODENAME")
        if env_name and self._modern_slurm(env_name):
            return env_name
        name = legacy_nodename(self.conf, self._resolve)
        if name:
            return name
        raw = socket.gethostname()
        if raw and self._modern_slurm(raw):
            return raw
        return None

    def _modern_slurm(self, name):
        """True unless the stepds under name speak a version before 23.11."""
        steps = [s for s in list_steps(self.conf.spool_dir(name), name, _Quiet())
                 if s.step_id == SLURM_EXTERN_CONT][:1]
        answers = query_steps(steps, self.deadline, self.trusted_uids()) if steps else []
        versions = [a.version for a in answers if a.failure is None]
        return not versions or versions[0] >= PROTOCOL_23_11

    def _resolve(self, host):
        """canonical_names(host), bounded by DNS_TIMEOUT and the budget. In a
        single-threaded process (sshd with pam_python) the lookup runs in a
        child process that is killed if it does not finish: a thread left
        behind would make the later setns(CLONE_NEWNS) of join_container
        fail (EINVAL: the process shares its fs_struct with the thread). A
        process that has threads already (the service, whose client joins
        the namespaces) keeps to a thread: fork is unsafe there."""
        wait = min(DNS_TIMEOUT, self.deadline.remaining(keep_reserve=True))
        if wait <= 0:
            return []
        try:
            threaded = len(os.listdir("/proc/self/task")) > 1
        except OSError:
            threaded = True
        if threaded:
            return self._resolve_in_thread(host, wait)
        return self._resolve_in_child(host, wait)

    def _resolve_in_thread(self, host, wait):
        import _thread
        result = []
        done = _thread.allocate_lock()
        done.acquire()

        def lookup():
            try:
                result.extend(canonical_names(host))
            finally:
                done.release()
        _thread.start_new_thread(lookup, ())
        if not done.acquire(True, wait):
            self.log.error("host name lookup of %s did not finish within %.1fs" % (host, wait))
            return []
        return result

    def _resolve_in_child(self, host, wait):
        import select
        import signal
        import time
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            self.log.error("host name lookup of %s: fork failed: %s" % (host, exc))
            return []
        if pid == 0:                                        # the child: look up, write, exit
            code = 1
            try:
                os.close(read_end)
                data = "\n".join(canonical_names(host)).encode("utf-8", "surrogateescape")
                while data:
                    data = data[os.write(write_end, data[:65536]):]
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        chunks = []
        end = time.monotonic() + wait
        try:
            poller = select.poll()
            poller.register(read_end, select.POLLIN | select.POLLHUP)
            while True:
                left = end - time.monotonic()
                if left <= 0 or not poller.poll(max(1, int(left * 1000))):
                    self.log.error("host name lookup of %s did not finish within %.1fs"
                                   % (host, wait))
                    os.kill(pid, signal.SIGKILL)
                    chunks = None
                    break
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(read_end)
            try:
                os.waitpid(pid, 0)          # at once: it has exited or been killed
            except OSError:
                pass
        if chunks is None:
            return []
        return [name for name in b"".join(chunks).decode("utf-8", "surrogateescape").split("\n")
                if name]

    # -- the flow --------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        finally:
            self.close()

    def _run(self):
        opts, log = self.opts, self.log

        allowed = opts.pam_service if opts.pam_service is not None else "sshd"
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
            self._trusted = None
            self.nodename = self.node_name()
            spool = self.conf.spool_dir(self.nodename) if self.nodename is not None else None
        except ConfigError as exc:
            log.error("%s; applying action_generic_failure=%s" % (exc, opts.action_generic_failure))
            return rc
        if self.nodename is None:
            log.error("stepd_available: Couldn't find nodename")
            self.user_msg(MSG_NO_STEP_LIST)
            return rc

        if not _trusted_dir(spool, self.trusted_uids(), log):
            log.error("applying action_generic_failure=%s" % opts.action_generic_failure)
            return rc
        steps = [s for s in list_steps(spool, self.nodename, log) if s.step_id == SLURM_EXTERN_CONT]
        log.debug("%d extern step(s) of node %s in %s" % (len(steps), self.nodename, spool))
        user_steps = self.query(steps, keep_uid=pw.pw_uid)

        skipped = self.timed_out_steps + self.untrusted_steps
        if not user_steps and skipped:
            log.error("uid %u: no job found, but %d slurmstepd(s) did not answer or could not "
                      "be trusted; applying action_generic_failure=%s"
                      % (pw.pw_uid, len(skipped), opts.action_generic_failure))
            return rc

        if not user_steps:
            if opts.action_no_jobs == ACTION_DENY:
                log.debug("uid %u owns no jobs => deny" % pw.pw_uid)
                self.user_msg(MSG_NO_JOBS)
                return PAM_PERM_DENIED
            log.debug("uid %u owns no jobs but action_no_jobs=ignore" % pw.pw_uid)
            return PAM_IGNORE

        if self.version >= PROTOCOL_26_05:
            log.debug("uid %u has %d job(s)" % (pw.pw_uid, len(user_steps)))
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

        log.debug("uid %u has %d jobs" % (pw.pw_uid, len(user_steps)))
        if self.try_rpc(pw, user_steps) == PAM_SUCCESS:
            return PAM_SUCCESS

        if opts.action_unknown == ACTION_ALLOW:
            log.debug("Allowing due to action_unknown=allow")
            return PAM_SUCCESS
        if opts.action_unknown == ACTION_DENY:
            log.debug("Denying due to action_unknown=deny")
            self.user_msg(MSG_UNKNOWN_SOURCE)
            return PAM_PERM_DENIED
        # The C module asks every step's owner again before it picks: a job
        # that ended during the login is not picked.
        self.close()
        live = self.query(user_steps, keep_uid=pw.pw_uid)
        if not live:
            if opts.action_no_jobs == ACTION_DENY:
                log.debug("uid %u owns no jobs => deny" % pw.pw_uid)
                self.user_msg(MSG_NO_JOBS)
                return PAM_PERM_DENIED
            # The C module returns PAM_SUCCESS here (and then crashes
            # logging the job it did not pick): success without adoption.
            log.debug("uid %u owns no jobs but action_no_jobs=allow" % pw.pw_uid)
            return PAM_SUCCESS
        try:
            step = pick_newest(live, self.conf, pw.pw_uid, opts, self.nodename, self.version, log)
        except ConfigError as exc:
            log.error("%s; applying action_generic_failure=%s" % (exc, opts.action_generic_failure))
            return generic_failure_rc(opts)
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
        log.debug("uid %u failed to adopt StepId=%u.extern action_adopt_failure=deny => deny"
                  % (pw.pw_uid, step.job_id))
        self.user_msg(MSG_ADOPT_FAILED_26_05)
        return PAM_PERM_DENIED

    def try_rpc(self, pw, user_steps):
        """_try_rpc(): ask the slurmd at the ssh client's address. Only a job
        that belongs to the user and has an extern step here is adopted."""
        log, conf = self.log, self.conf
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
        prefix = "From %s port %d as %s: " % (src, conn.port_src, pw.pw_name)
        unsupported = None
        if conf.auth_type != "auth/munge":
            unsupported = "AuthType=%s" % conf.get("AuthType")
        elif conf.tls_type != "tls/none":
            unsupported = "TLSType=%s" % conf.get("TLSType")
        job_id = NO_VAL
        if unsupported:
            log.error(prefix + "cannot ask the remote slurmd: %s is not supported by this module"
                      % unsupported)
        else:
            try:
                job_id, _remote = callerid_rpc(
                    conn, conf.slurmd_port, self.version or PROTOCOL_22_05, conf.munge_socket,
                    min(float(conf.message_timeout), RPC_TIMEOUT_CAP),
                    self.deadline.until(keep_reserve=True), log,
                    trusted_uids=self.trusted_uids(),
                    block_zero_hash=conf.comm_param("block_zero_hash"),
                    block_null_hash=conf.comm_param("block_null_hash"))
            except MungeError as exc:
                log.error(prefix + "cannot ask the remote slurmd: %s" % exc)
            except (RpcError, StepdTimeout, ConfigError) as exc:
                log.debug(prefix + "unable to retrieve callerid data from remote slurmd (%s)"
                          % exc)
            else:
                if job_id == NO_VAL:
                    log.debug(prefix + "job indeterminate")
        if job_id != NO_VAL:
            log.info(prefix + "member of job %u" % job_id)
            mine = [s for s in user_steps if s.job_id == job_id]
            if not mine:
                # The C module adopts into whatever job the remote slurmd
                # names; we only adopt into a job of this user on this node.
                log.info("job %u is not a job of %s on this node; not adopting into it"
                         % (job_id, pw.pw_name))
                return PAM_IGNORE
            return PAM_SUCCESS if self.adopt(mine[0]) else PAM_IGNORE
        log.info(prefix + "unable to determine source job")
        return PAM_IGNORE


class _LazyUids(object):
    """Membership test for root, SlurmUser and SlurmdUser: names are resolved
    (NSS) only when a uid other than 0 must be checked."""

    def __init__(self, names):
        self.names = names
        self.uids = None

    def __contains__(self, uid):
        if uid == 0:
            return True
        if self.uids is None:
            self.uids = set([0])
            for name in self.names:
                if name.isdigit():
                    self.uids.add(int(name))
                    continue
                try:
                    self.uids.add(pwd.getpwnam(name).pw_uid)
                except KeyError:
                    pass
        return uid in self.uids


class _Quiet(object):
    """A log that drops everything (probing spool dirs for the node name)."""

    def error(self, msg):
        pass


def _trusted_dir(path, trusted_uids, log):
    """The spool dir must belong to root, SlurmUser or SlurmdUser (the uids
    whose stepd answers are believed anyway; Debian's package gives it to
    SlurmUser) and be writable by nobody else: whoever can create a socket
    there is believed about jobs and hands sshd the namespaces it joins.
    A missing dir is fine (no steps)."""
    try:
        st = os.stat(path)
    except OSError:
        return True
    if st.st_mode & 0o022 or st.st_uid not in trusted_uids:
        log.error("SlurmdSpoolDir %s is owned by uid %u with mode %04o: it must belong to root, "
                  "SlurmUser or SlurmdUser and not be writable by group or others; not trusting "
                  "its step sockets" % (path, st.st_uid, st.st_mode & 0o7777))
        return False
    return True


def run_safely(adopter):
    """The flow, with every unexpected error turned into the generic-failure
    action: nothing may escape into sshd."""
    try:
        rc = adopter.run()
    except Exception as exc:   # pylint: disable=broad-except
        try:
            adopter.log.error("unexpected error: %s: %s; applying action_generic_failure=%s"
                              % (type(exc).__name__, exc, adopter.opts.action_generic_failure))
        except Exception:      # pylint: disable=broad-except
            pass
        rc = generic_failure_rc(adopter.opts)
    if not getattr(adopter, "dry_run", True):
        try:   # the drift check's login counters (counters.py); never in the way of the login
            errors = any(line[0] in (LOG_LEVEL_FATAL, LOG_LEVEL_ERROR) for line in adopter.log.lines)
            counters.count(rc, adopter.adopted_job is not None, errors, PAM_SUCCESS, PAM_IGNORE)
        except Exception:      # pylint: disable=broad-except
            pass
    return rc


def report_option_problems(opts, log, service):
    for text in opts.problems:
        log.pam_syslog(3, text, service)
