# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entry points: pam_python, pam_exec and the explain command."""

import os
import sys

from .sockets import socket
from .constants import (LOG_LEVEL_DEBUG5, LOG_LEVEL_END, LOG_LEVEL_NAMES, PAM_IGNORE,
                        PAM_PERM_DENIED, PAM_RC_NAMES, PAM_SUCCESS)
from .flow import Adopter, PamContext, report_option_problems, run_safely
from .log import Log
from .options import parse_options


def fallback_rc(args):
    """The rc of action_generic_failure read straight from the module
    arguments, for a failure outside the flow (nothing else can be trusted
    to work then). The same rule as the shim's _unloadable_rc."""
    action = "ignore"
    for arg in args:
        if arg[:23].lower() == "action_generic_failure=":
            for word in ("allow", "ignore", "deny"):
                if arg[23:23 + len(word)].lower() == word:
                    action = word
    return {"deny": PAM_PERM_DENIED, "allow": PAM_SUCCESS}.get(action, PAM_IGNORE)


# ---------------------------------------------------------------------------
# pam_python entry point
# ---------------------------------------------------------------------------

class PamPythonContext(PamContext):
    can_setns = True

    def __init__(self, pamh):
        self.pamh = pamh
        self.pid = os.getpid()
        self.service = _pam_item(pamh, "service")
        self.user = _pam_item(pamh, "user")

    def send_user_msg(self, text):
        try:
            self.pamh.conversation(self.pamh.Message(self.pamh.PAM_ERROR_MSG, text))
        except Exception:      # pylint: disable=broad-except
            pass

    def putenv(self, name, value):
        self.pamh.env[name] = value

    def netinfo(self):
        from .callerid import own_netinfo
        return own_netinfo("self")


def _pam_item(pamh, name):
    try:
        return getattr(pamh, name)
    except Exception:          # pylint: disable=broad-except
        return None


def pam_sm_acct_mgmt(pamh, flags, argv):
    """pam_python's account hook. An error outside the flow applies
    action_generic_failure too: it never lets a user in by accident."""
    try:
        opts = parse_options(list(argv[1:]))
        ctx = PamPythonContext(pamh)
        log = Log(opts.log_level)
        try:
            report_option_problems(opts, log, ctx.service)
            return run_safely(Adopter(opts, ctx, log))
        finally:
            log.close()
    except Exception:          # pylint: disable=broad-except
        return fallback_rc(list(argv[1:]))


# ---------------------------------------------------------------------------
# pam_exec mode
# ---------------------------------------------------------------------------

class PamExecContext(PamContext):
    """pam_exec runs us as a child of sshd: adopt the parent; PAM items come
    as environment variables; messages go to stdout (pam_exec's `stdout`
    option shows them to the user); pam_putenv and setns are impossible."""

    can_setns = False

    def __init__(self, items):
        self.pid = os.getppid()
        self.service = items.get("PAM_SERVICE")
        self.user = items.get("PAM_USER")
        self.messages = []

    def send_user_msg(self, text):
        self.messages.append(text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def putenv(self, name, value):
        pass

    def netinfo(self):
        from .callerid import own_netinfo
        return own_netinfo(self.pid)


# The items pam_exec appends after the PAM environment, in this order, then
# PAM_TYPE (Linux-PAM 1.3 ... 1.7, modules/pam_exec/pam_exec.c). A missing
# item is left out.
PAM_EXEC_ITEMS = ("PAM_SERVICE", "PAM_USER", "PAM_TTY", "PAM_RHOST", "PAM_RUSER")
# Read from the environment only when set on the command line (after PAM_TYPE).
COMMAND_LINE_VARIABLES = ("SLURM_CONF", "SLURMD_NODENAME")


def read_environ(path="/proc/self/environ"):
    """This process's environment as exec'd, in order, duplicates kept."""
    with open(path, "rb") as handle:
        raw = handle.read()
    return [os.fsdecode(entry) for entry in raw.split(b"\0") if entry]


def pam_exec_items(entries):
    """(items, environ) from the environment pam_exec built: the PAM
    environment first (any earlier module may put any name there), then
    the PAM items and PAM_TYPE, then whatever a wrapper on the command line
    (/usr/bin/env NAME=VALUE) appended.

    Nothing is taken from a name the PAM environment could shadow: the items
    are read from the end, at the positions pam_exec gives them, and
    SLURM_CONF / SLURMD_NODENAME only when they come after PAM_TYPE. Returns
    ({} if the layout is not pam_exec's, environ for the flow)."""
    names = [entry.partition("=")[0] for entry in entries]
    if "PAM_TYPE" not in names:
        return {}, {}
    last = len(names) - 1 - names[::-1].index("PAM_TYPE")
    items = {"PAM_TYPE": entries[last].partition("=")[2]}
    pos = last - 1
    for name in reversed(PAM_EXEC_ITEMS):
        if pos >= 0 and names[pos] == name:
            items[name] = entries[pos].partition("=")[2]
            pos -= 1
    environ = {}
    for entry in entries[last + 1:]:
        name, _sep, value = entry.partition("=")
        if name in COMMAND_LINE_VARIABLES:
            environ[name] = value
    return items, environ


def pam_exec_main(args, entries=None):
    """Exit status for pam_exec: 0 (PAM_SUCCESS) for success and for
    PAM_IGNORE, which pam_exec cannot express; 1 (pam_exec turns any
    non-zero status into PAM_SYSTEM_ERR) for every denial and, under
    action_generic_failure=deny, for every failure of the helper itself."""
    try:
        opts = parse_options(args)
        log = Log(opts.log_level)
        try:
            items, environ = pam_exec_items(read_environ() if entries is None else entries)
            if items.get("PAM_TYPE") != "account":
                log.error("pam-exec: not called by pam_exec.so in the account stack "
                          "(PAM_TYPE=%s); applying action_generic_failure=%s"
                          % (items.get("PAM_TYPE"), opts.action_generic_failure))
                rc = fallback_rc(args)
            else:
                ctx = PamExecContext(items)
                opts.join_container = opts.join_container and ctx.can_setns
                report_option_problems(opts, log, ctx.service)
                rc = run_safely(Adopter(opts, ctx, log, environ=environ))
        finally:
            log.close()
    except Exception:          # pylint: disable=broad-except
        rc = fallback_rc(args)
    return 0 if rc in (PAM_SUCCESS, PAM_IGNORE) else 1


# ---------------------------------------------------------------------------
# explain: the administrator's view
# ---------------------------------------------------------------------------

class ExplainContext(PamContext):
    can_setns = False

    def __init__(self, user, service, conn, out):
        self.user = user
        self.service = service
        self.pid = os.getpid()
        self._conn = conn
        self.out = out
        self.messages = []

    def send_user_msg(self, text):
        self.messages.append(text)
        self.out("  -> the user would see: %s" % text)

    def putenv(self, name, value):
        self.out("  -> PAM environment: %s=%s" % (name, value))

    def netinfo(self):
        return self._conn


def _explain_conn(rhost, rport, lhost, lport):
    if not rhost:
        return None
    from .callerid import CallerConn
    af = socket.AF_INET6 if ":" in rhost else socket.AF_INET
    if not lhost:
        probe = socket.socket(af, socket.SOCK_DGRAM)
        try:
            probe.connect((rhost, 9))      # selects a route; sends nothing
            lhost = probe.getsockname()[0]
        finally:
            probe.close()

    def addr16(text):
        return socket.inet_pton(af, text).ljust(16, b"\0")
    return CallerConn(addr16(rhost), int(rport or 0), addr16(lhost), int(lport), af)


def explain_main(args, out=None):
    import argparse
    out = out or (lambda text: sys.stdout.write(text + "\n"))
    parser = argparse.ArgumentParser(
        prog="pam_slurm_adopt.py explain",
        description="Show what pam_slurm_adopt would decide for USER on this node, "
                    "step by step, without adopting anything.")
    parser.add_argument("user")
    parser.add_argument("--rhost", help="address of the ssh client (for the callerid RPC)")
    parser.add_argument("--rport", type=int, default=0, help="port of the ssh client")
    parser.add_argument("--lhost", help="sshd's address (default: the route to --rhost)")
    parser.add_argument("--lport", type=int, default=22, help="sshd's port (default 22)")
    parser.add_argument("--service", default="sshd", help="PAM service name (default sshd)")
    parser.add_argument("options", nargs="*", help="module options, e.g. action_unknown=deny")
    # Options may follow the flags (as the usage line shows): argparse leaves
    # a positional list after an optional for parse_known_args.
    ns, rest = parser.parse_known_args(args)
    unknown = [arg for arg in rest if arg.startswith("-")]
    if unknown:
        parser.error("unrecognized arguments: %s" % " ".join(unknown))
    ns.options = list(ns.options) + rest
    opts = parse_options(ns.options)

    def echo(level, msg):
        out("  [%s] %s" % (LOG_LEVEL_NAMES[level] if level < LOG_LEVEL_END else level, msg))

    log = Log(LOG_LEVEL_DEBUG5, to_syslog=False, echo=echo)
    out("pam_slurm_adopt explain: user=%s service=%s" % (ns.user, ns.service))
    out("options: %s" % " ".join("%s=%s" % kv for kv in sorted(opts.as_dict().items())))
    for text in opts.problems:
        out("  [option] %s" % text)
    try:
        conn = _explain_conn(ns.rhost, ns.rport, ns.lhost, ns.lport)
    except (OSError, ValueError) as exc:
        out("bad --rhost/--lhost: %s" % exc)
        return 2
    ctx = ExplainContext(ns.user, ns.service, conn, out)
    adopter = Adopter(opts, ctx, log, dry_run=True)
    rc = run_safely(adopter)
    decision = PAM_RC_NAMES.get(rc, str(rc))
    if adopter.adopted_job is not None:
        detail = "adopt into job %u" % adopter.adopted_job
    elif rc == PAM_SUCCESS:
        detail = "allow without adoption"
    elif rc == PAM_IGNORE:
        detail = "no decision; the rest of the PAM stack decides"
    else:
        detail = "deny"
    out("decision: %s (%s)" % (decision, detail))
    return 0 if rc in (PAM_SUCCESS, PAM_IGNORE) else 1


def self_check_main(out=None):
    """Import every module of the package with this interpreter (what a
    deployment checks before PAM relies on it). 0 when all load."""
    import importlib
    out = out or (lambda text: sys.stdout.write(text + "\n"))
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(n[:-3] for n in os.listdir(here)
                   if n.endswith(".py") and n != "__init__.py")
    failed = []
    for name in names:
        try:
            importlib.import_module("%s.%s" % (__package__, name))
        except Exception as exc:   # pylint: disable=broad-except
            failed.append("%s: %s" % (name, exc))
    if failed:
        out("pam_slurm_adopt self-check FAILED: " + "; ".join(failed))
        return 1
    out("pam_slurm_adopt self-check ok: python %d.%d, %d modules in %s"
        % (sys.version_info[0], sys.version_info[1], len(names), here))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "explain":
        return explain_main(argv[1:])
    if argv and argv[0] == "self-check":
        return self_check_main()
    if argv and argv[0] == "pam-exec":
        return pam_exec_main(argv[1:])
    sys.stderr.write("usage: pam_slurm_adopt.py explain USER [--rhost ADDR --rport PORT] "
                     "[options]\n       pam_slurm_adopt.py pam-exec [options]   "
                     "(from pam_exec.so)\n       pam_slurm_adopt.py self-check\n")
    return 2
