# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged fast path of site.yml (module hpc.slurm_adopt.converged).

Standard library only, Python 3.6+, no Ansible imports.

A successful full run of site.yml records, as its very last step on a compute
node, the inputs it ran with (a fingerprint computed on the controller) and
the node's state it left (:func:`node_state`: every file below the paths the
roles manage or read, with owner, mode and sha256, symlink targets, the
systemd units' states, the package database, the host name, the Python, the
OS release and the connecting user).  The next run asks, in one read-only
step, :func:`decide`: same inputs, the same state, nothing pending, and the
node's own drift check green?  Then the run would change nothing there and
the per-node roles are skipped.  Anything else (no record, another
fingerprint, any difference, an error) means the full run, as without the
fast path.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import hashlib
import json
import os
import pwd
import socket
import stat
import sys

RECORD_VERSION = 1
# at most this many differences are listed in the reason
MAX_LISTED = 5
PACKAGE_DBS = ("/var/lib/dpkg/status", "/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/Packages",
               "/usr/lib/sysimage/rpm/rpmdb.sqlite")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _excluded(path, exclude):
    name = os.path.basename(path)
    for pattern in exclude:
        if "/" in pattern:
            if path == pattern or path.startswith(pattern.rstrip("/") + "/"):
                return True
        elif name == pattern:
            return True
    return False


def entry(path):
    """One path's signature: 'file uid:gid:mode sha256', 'dir uid:gid:mode',
    'link -> target', 'other uid:gid:mode' or 'absent'."""
    try:
        info = os.lstat(path)
    except OSError:
        return "absent"
    owner = "%d:%d:%o" % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))
    if stat.S_ISLNK(info.st_mode):
        return "link -> %s" % os.readlink(path)
    if stat.S_ISDIR(info.st_mode):
        return "dir %s" % owner
    if stat.S_ISREG(info.st_mode):
        try:
            return "file %s %s" % (owner, _sha256(path))
        except (IOError, OSError) as exc:
            return "file %s unreadable: %s" % (owner, exc)
    return "other %s" % owner


def expand(paths):
    """The paths, shell globs expanded (a glob that matches nothing is
    dropped; a plain path stays, so that its absence is recorded too)."""
    out = []
    for path in paths:
        if glob.has_magic(path):
            out.extend(sorted(glob.glob(path)))
        else:
            out.append(path)
    seen, unique = set(), []
    for path in out:
        path = os.path.normpath(path)
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def files_state(paths, exclude=()):
    """{path: signature} of every path and, for directories, of everything
    below them (symlinks are not followed)."""
    out = {}
    for top in expand(paths):
        if _excluded(top, exclude):
            continue
        out[top] = entry(top)
        if not out[top].startswith("dir "):
            continue
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not _excluded(os.path.join(root, d), exclude))
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                if not _excluded(path, exclude):
                    out[path] = entry(path)
    return out


def units_state(units, run):
    """{unit: 'LoadState ActiveState UnitFileState'} from one systemctl call
    (run(argv) -> (rc, stdout, stderr): the module's run_command)."""
    if not units:
        return {}
    try:
        _rc, out, _err = run(["systemctl", "show", "--property=Id,LoadState,ActiveState,UnitFileState", "--"]
                             + list(units))
    except (OSError, ValueError) as exc:
        return {"(systemctl)": "cannot run: %s" % exc}
    blocks = out.split("\n\n")
    states = {}
    for unit, block in zip(units, blocks + [""] * (len(units) - len(blocks))):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = "%s %s %s" % (props.get("LoadState", "?"), props.get("ActiveState", "?"),
                                     props.get("UnitFileState", "?"))
    return states


def packages_state():
    """The package database: sha256 of dpkg's status file, or size and mtime
    of the RPM database (any package change means a full run)."""
    out = {}
    for path in PACKAGE_DBS:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if path.endswith("/status"):
            out[path] = _sha256(path)
        else:
            out[path] = "%d %d" % (info.st_size, int(info.st_mtime))
    return out


def connecting_user(environ=None):
    """Who Ansible connects as: the user sudo (or doas) was called by, else
    the login uid's user, else the user this runs as."""
    environ = os.environ if environ is None else environ
    for key in ("SUDO_USER", "DOAS_USER"):
        if environ.get(key):
            return environ[key]
    try:
        with open("/proc/self/loginuid") as handle:
            uid = int(handle.read().strip())
        if uid != 4294967295:
            return pwd.getpwuid(uid).pw_name
    except (IOError, OSError, ValueError, KeyError):
        pass
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def node_facts():
    """The few facts the roles take from the node (host name, Python, OS)."""
    release = "absent"
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if os.path.exists(path):
            release = _sha256(path)
            break
    return {"hostname": socket.gethostname(), "python": sys.executable, "os_release": release}


def node_state(paths, run, exclude=(), units=(), environ=None):
    return {"files": files_state(paths, exclude), "units": units_state(list(units), run),
            "packages": packages_state(), "facts": node_facts(), "user": connecting_user(environ)}


def record_text(fingerprint, state):
    return json.dumps({"version": RECORD_VERSION, "fingerprint": fingerprint, "state": state},
                      indent=1, sort_keys=True) + "\n"


def differences(recorded, live):
    """Human-readable differences between two node states."""
    out = []
    for part in ("files", "units", "packages", "facts"):
        old, new = recorded.get(part, {}), live.get(part, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append("%s %s: %s -> %s" % (part[:-1] if part.endswith("s") else part, key,
                                                old.get(key, "not recorded"), new.get(key, "not there")))
    if recorded.get("user") != live.get("user"):
        out.append("connecting user: %s -> %s" % (recorded.get("user"), live.get("user")))
    return out


def drift_check(argv, run, timeout=120):
    """Run the node's drift check (read-only: --only, --no-metrics), within
    `timeout` seconds (coreutils' timeout), and return (green, reason)."""
    if not argv:
        return False, "no drift check configured"
    argv = list(argv)
    if not argv[0]:
        argv[0] = sys.executable
    try:
        returncode, stdout, stderr = run(["timeout", str(timeout)] + argv)
    except (OSError, ValueError) as exc:
        return False, "the drift check did not run: %s" % exc
    try:
        report = json.loads(stdout)
        checks = report["checks"]
    except (ValueError, KeyError, TypeError):
        return False, "the drift check did not answer (rc %s): %s" % (returncode, (stderr or stdout)[-300:])
    if not checks:
        return False, "the drift check ran no check"
    bad = ["%s %s: %s" % (c.get("check"), c.get("status"), c.get("message")) for c in checks if c.get("status") != "ok"]
    if bad:
        return False, "drift check not green: %s" % "; ".join(bad[:MAX_LISTED])
    return True, "drift check green (%d checks)" % len(checks)


def decide(record_path, fingerprint, paths, run, exclude=(), units=(), must_be_absent=(), check_argv=None,
           environ=None):
    """(converged, reason, differences): may the full run be skipped here?"""
    if not fingerprint:
        return False, "no fingerprint of this run's inputs", []
    try:
        with open(record_path) as handle:
            record = json.load(handle)
    except (IOError, OSError) as exc:
        return False, "no record of a successful full run (%s)" % getattr(exc, "strerror", exc), []
    except ValueError as exc:
        return False, "the record %s is not JSON: %s" % (record_path, exc), []
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return False, "the record %s is of another format" % record_path, []
    if record.get("fingerprint") != fingerprint:
        return False, "the inputs changed since the last full run (collection, settings or connection)", []
    pending = [p for p in must_be_absent if os.path.lexists(p)]
    if pending:
        return False, "pending: %s" % ", ".join(pending), []
    live = node_state(paths, run, exclude, units, environ=environ)
    diffs = differences(record.get("state", {}), live)
    if diffs:
        more = " and %d more" % (len(diffs) - MAX_LISTED) if len(diffs) > MAX_LISTED else ""
        return False, "changed since the last full run: %s%s" % ("; ".join(diffs[:MAX_LISTED]), more), diffs
    green, why = drift_check(check_argv, run)
    if not green:
        return False, why, []
    return True, "same inputs, same state as the last full run, %s" % why, []


def write_record(record_path, fingerprint, paths, run, exclude=(), units=(), must_be_absent=(), environ=None,
                 dry_run=False):
    """Record the node's state after a successful full run.  Returns
    (changed, reason); nothing is recorded (and an old record is removed)
    while something is pending."""
    pending = [p for p in must_be_absent if os.path.lexists(p)]
    old = None
    try:
        with open(record_path) as handle:
            old = handle.read()
    except (IOError, OSError):
        pass
    if pending or not fingerprint:
        if old is not None and not dry_run:
            os.unlink(record_path)
        return old is not None, ("not recorded, pending: %s" % ", ".join(pending)) if pending else \
            "not recorded: no fingerprint"
    text = record_text(fingerprint, node_state(paths, run, exclude, units, environ=environ))
    if text == old:
        return False, "recorded already"
    if not dry_run:
        directory = os.path.dirname(record_path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        tmp = "%s.tmp.%d" % (record_path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.rename(tmp, record_path)
    return True, "recorded"
