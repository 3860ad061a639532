# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm_adopt_check.py - is pam_slurm_adopt still in force on this node?

Standard library only, Python 3.6+.  Installed on compute nodes by the
hpc.slurm_adopt.adopt_drift role as /usr/lib/slurm-adopt/slurm_adopt_check.py
and run by Slurm's HealthCheckProgram (through a small wrapper) or by LBNL NHC.

Commands::

    slurm_adopt_check.py check [--json] [--config FILE] [--probe-user USER]
        Run every check, print a table (or JSON), exit 0 (all green),
        1 (a check could not be decided: warning), 2 (adoption is broken).

    slurm_adopt_check.py drain [--config FILE] [--dry-run]
        HealthCheckProgram mode: run the checks; when adoption is broken,
        drain this node with a reason starting with "slurm-adopt:"; when it
        is fine again, resume the node, but only if the current drain reason
        is ours.  A node drained by anyone else is never touched.

    Both write Prometheus metrics (node_exporter textfile collector) when
    the configuration names a textfile directory (textfile_dir), unless run
    with --only, --no-metrics or --dry-run: the state of each check, the
    module's version and checksums, the time of the check, and the logins
    the module counted since the previous run (slurm_adopt/counters.py).

    slurm_adopt_check.py explain USER [--json] [--config FILE] [--rhost ADDR]
        What the module would decide for USER on this node, and why: the
        module's own `explain`, with the options of the DEPLOYED adopt rule
        (read from the effective account stack); changes nothing.

    slurm_adopt_check.py digest DIR
        The digest of the module's implementation package (used by the role
        to record what the collection ships).

The configuration (JSON, written by the role; keys and defaults in DEFAULTS
below) says what "in force" means on this node: the module path and its
expected checksums, the PAM service, the rules allowed after the adopt rule
(the admin pam_access rule), whether systemd-logind must be masked and
pam_systemd absent, and the Slurm flags that must be set.

PAM files are read with the collection's one PAM parser
(plugins/module_utils/_pam_stack.py, installed next to this script as
slurm_adopt_pam_stack.py): the editor, pam_stack_info, this check and the
testinfra suite agree on what a stack does.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shlex
import socket
import stat
import struct
import subprocess
import sys
import time

# Run as root from slurmd every few minutes: leave no __pycache__ next to the
# check and the collection code it loads (the role removes exactly what it installed).
sys.dont_write_bytecode = True

DEFAULT_CONFIG = "/etc/slurm-adopt/check.json"
REASON_PREFIX = "slurm-adopt:"
OK, WARN, FAIL = "ok", "warn", "fail"

DEFAULTS = {
    "module_path": "/usr/lib/slurm-adopt/pam_slurm_adopt.py",
    "module_sha256": None,           # expected sha256 of module_path
    "package_dir": "/usr/lib/slurm-adopt/slurm_adopt",
    "package_digest": None,          # expected digest() of package_dir
    "root": "/",                     # the node's file system (a tree of an image: its root)
    "pam_dir": "/etc/pam.d",
    "pam_state_dir": "/var/lib/slurm-adopt/pam",   # role adopt_pam's state (what it wrote)
    "pam_service": "sshd",
    "adopt_match": "pam_slurm_adopt",  # a rule is the adopt rule if module or args contain this
    # rules that may follow the adopt rule / that are allowed to short-circuit
    # before it: a list of regular expressions matched against
    # "<control> <module> <args>" of the rule
    "allowed_after": [r"pam_access\.so"],
    "allowed_before": [],
    # where PAM modules named without a path are found
    "pam_module_dirs": [
        "/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security", "/lib/security",
        "/usr/lib/x86_64-linux-gnu/security", "/usr/lib/aarch64-linux-gnu/security",
        "/usr/lib/security", "/lib64/security", "/usr/lib64/security"],
    "logind": "masked",              # masked | any (adopt_logind_mask: false)
    "pam_systemd": "absent",         # absent | any (adopt_pam_disable_pam_systemd: false)
    "slurm_flags": {                 # key -> list of words that must be in the value
        "PrologFlags": ["contain"],
        "ProctrackType": ["proctrack/cgroup"],
        "TaskPlugin": ["task/cgroup"],
    },
    "check_slurm": True,             # scontrol show config / show slurmd / stepd sockets
    "nodename": None,                # default: $SLURMD_NODENAME, then hostname -s
    "probe_user": None,              # user for the live `explain` probe (no job expected)
    # interface service (docs/service.md): the client's build record (role
    # adopt_module: {"output": sha256 of the client built, ...}), the
    # service's socket, and the file system whose systemd has the units
    "client_record": "/usr/lib/slurm-adopt/client.build-id",
    "service_socket": "/run/slurm-adopt/adopt.sock",
    "systemd_root": "/",
    "timeout": 15,
    # metrics (node_exporter textfile collector): empty/None = off
    "textfile_dir": None,
    "counter_dir": "/run/slurm-adopt/counters",   # the module's slurm_adopt/counters.py COUNTER_DIR
}


# ---------------------------------------------------------------------------
# PAM configuration: the collection's one parser (plugins/module_utils/_pam_stack.py),
# installed next to this script as slurm_adopt_pam_stack.py
# ---------------------------------------------------------------------------

# The collection's module_utils this check uses, as installed next to it
# (slurm_adopt_<name>.py) or, run from the collection itself, in
# plugins/module_utils/.  They import each other under their collection names
# (ansible_collections.hpc.slurm_adopt.plugins.module_utils.<name>); those
# imports are answered with these copies, without touching sys.modules.
PAM_STACK_NAME = "slurm_adopt_pam_stack.py"
COLLECTION_UTILS = "ansible_collections.hpc.slurm_adopt.plugins.module_utils"
UTILS = ("_pam_stack", "_pam_eval", "_pam_guard", "_pam_health")
_LOADED = {}


def _util_path(name):
    here = os.path.dirname(os.path.realpath(__file__))
    for cand in (os.path.join(here, "slurm_adopt_%s.py" % name.lstrip("_")),
                 os.path.join(here, "..", "..", "..", "plugins", "module_utils", name + ".py")):
        if os.path.isfile(cand):
            return cand
    raise ImportError("%s of the collection is not installed next to %s" % (name, __file__))


def collection_util(name):
    """One of UTILS, loaded once, by file path (never from a directory a user
    could put a module into)."""
    if name in _LOADED:
        return _LOADED[name]
    import builtins
    real_import = builtins.__import__

    def _import(mod_name, globs=None, locs=None, fromlist=(), level=0):
        if mod_name.startswith(COLLECTION_UTILS + "."):
            return collection_util(mod_name[len(COLLECTION_UTILS) + 1:])
        return real_import(mod_name, globs, locs, fromlist, level)

    spec = importlib.util.spec_from_file_location("slurm_adopt_check_" + name, _util_path(name))
    mod = importlib.util.module_from_spec(spec)
    mod.__dict__["__builtins__"] = dict(builtins.__dict__, __import__=_import)
    _LOADED[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:
        del _LOADED[name]
        raise
    return mod


def pam_stack(path=None):
    """The PAM parser (plugins/module_utils/_pam_stack.py of the collection)."""
    if path and "pam_stack" not in _LOADED:
        spec = importlib.util.spec_from_file_location("slurm_adopt_check_pam_stack", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _LOADED["pam_stack"] = mod
    return collection_util("_pam_stack")


def pam_source(conf, source=None):
    """Where PAM files are read: the node (default) or `source` (the testinfra
    suite passes a reader of a remote host)."""
    if source is not None:
        return source
    return pam_stack().FileSource(conf.get("root", "/"), conf["pam_dir"], conf.get("vendor_dir", "/usr/lib/pam.d"))


def _where(entry):
    return "%s:%d" % (entry.line.path, entry.line.lineno)


def _text(entry):
    return entry.line.text.strip()


def analyse_account(conf, source=None):
    """(problems, info, adopt_entry) for the effective account stack.

    The PAM semantics (includes, substacks, controls, jumps, which rules can
    end the stack before the adopt rule and which are kept on purpose: system
    users, the admin bypass) are those of pam_stack.analyse_account, the
    same as the editor's and pam_stack_info's."""
    ps = pam_stack()
    src = pam_source(conf, source)
    stack = ps.effective_stack(src, conf["pam_service"], "account")
    match = conf["adopt_match"]
    result = ps.analyse_account(stack, lambda line: ps.is_adopt_rule(line, match))
    info = {"account_stack": ["%s    # %s" % (_text(e), _where(e)) for e in stack.entries]}
    problems = list(stack.errors)
    top = stack.top_level()
    adopt = [i for i in top if ps.is_adopt_rule(stack.entries[i].line, match)]
    nested = [i for i, e in enumerate(stack.entries)
              if e.substack_depth > 0 and ps.is_adopt_rule(e.line, match)]
    if nested:
        problems.append("an adopt rule is inside a substack (its result does not end the stack): %s"
                        % ", ".join(_where(stack.entries[i]) for i in nested))
    if not adopt:
        problems.append("no adopt rule (%s) in the effective %s account stack"
                        % (match, conf["pam_service"]))
        return problems, info, None
    if len(adopt) > 1:
        problems.append("%d adopt rules in the account stack (%s)"
                        % (len(adopt), ", ".join(_where(stack.entries[i]) for i in adopt)))
    entry = stack.entries[adopt[-1]]
    info["adopt_rule"] = "%s    # %s" % (_text(entry), _where(entry))
    info["adopt_module"] = entry.line.module
    info["adopt_args"] = list(entry.line.args)
    allowed_after = [re.compile(p) for p in conf["allowed_after"]]
    for later in result["after_adopt"]:
        line = later.line
        desc = "%s %s %s" % (line.control, line.module, " ".join(line.args))
        if not (line.added_tag == "admin_access" or any(p.search(desc) for p in allowed_after)):
            problems.append("the adopt rule is not last: %s follows it (%s)" % (_text(later), _where(later)))
    allowed_before = [re.compile(p) for p in conf["allowed_before"]]
    kept = []
    for term in result["terminators"]:
        desc = "%s %s %s" % (term["control"], term["module"], " ".join(term["args"]))
        where = "%s:%d" % (term["file"], term["line"])
        if term["classification"] in ("short_circuit", "jump_past_adopt") \
                and not any(p.search(desc) for p in allowed_before):
            problems.append("short-circuit before the adopt rule: %s (%s): %s"
                            % (term["text"].strip(), where, term["reason"]))
        else:
            kept.append("%s (%s): %s" % (where, term["classification"], term["reason"]))
    if kept:
        info["kept_before_adopt"] = kept
    return problems, info, entry


def pam_systemd_rules(conf, source=None):
    """Active pam_systemd / pam_elogind rules in the effective session stack:
    they move an ssh session out of the job's cgroup."""
    ps = pam_stack()
    stack = ps.effective_stack(pam_source(conf, source), conf["pam_service"], "session")
    rules = [e for e in stack.entries
             if e.line.module_name in ("pam_systemd.so", "pam_elogind.so")]
    return rules, list(stack.errors)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest(directory):
    """Digest of every *.py below `directory` (relative name + content),
    byte-compiled caches ignored."""
    total = hashlib.sha256()
    names = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                names.append(os.path.relpath(os.path.join(root, name), directory))
    for name in sorted(names):
        total.update(name.encode() + b"\0" + sha256_file(os.path.join(directory, name)).encode()
                     + b"\n")
    return total.hexdigest()


def run(argv, timeout):
    """(rc, stdout+stderr); rc None when the command is missing or timed out."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    return proc.returncode, proc.stdout


def oneline(text, limit=200):
    """The last `limit` characters of command output, on one line."""
    return " | ".join(ln.strip() for ln in (text or "").strip().splitlines() if ln.strip())[-limit:]


def parse_show(text):
    """`scontrol show config` / `show node` output -> {key: value}."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r"^(\w+)\s+=\s?(.*)$", line)
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def nodename(conf):
    """slurmd's name for this node: $SLURMD_NODENAME (slurmd sets it for
    HealthCheckProgram), else `nodename` of the configuration, else hostname -s."""
    return (os.environ.get("SLURMD_NODENAME") or conf.get("nodename")
            or socket.gethostname().split(".")[0])


# ---------------------------------------------------------------------------
# the checks: each returns (status, message[, details])
# ---------------------------------------------------------------------------

def _unsafe(path, follow=True):
    """Why a non-root user could replace `path` (None when it is safe): it or
    a directory above it is not owned by root or is group/world-writable.
    Symlinks are followed; the directories of the link and of its target are
    both checked."""
    checked = set()
    todo = [os.path.abspath(path)]
    if follow:
        todo.append(os.path.realpath(path))
    for cand in todo:
        parts = cand.split(os.sep)
        for i in range(1, len(parts) + 1):
            sub = os.sep.join(parts[:i]) or os.sep
            if sub in checked:
                continue
            checked.add(sub)
            try:
                st = os.stat(sub)
            except OSError as exc:
                return "%s: %s" % (sub, exc.strerror)
            if st.st_uid != 0:
                return "%s is owned by uid %d, not root" % (sub, st.st_uid)
            if st.st_mode & 0o022:
                return "%s is group/world writable (%o)" % (sub, st.st_mode & 0o777)
    return None


def check_module_file(conf):
    path = conf["module_path"]
    real = os.path.realpath(path)
    release = ""
    if real != os.path.abspath(path):
        release = " (release %s)" % os.path.basename(os.path.dirname(real))
    if not os.path.isfile(path):
        return FAIL, "module file %s missing or not a regular file" % path
    why = _unsafe(path)
    if why:
        return FAIL, "module file %s: %s" % (path, why)
    want = conf.get("module_sha256")
    if want:
        have = sha256_file(path)
        if have != want:
            return FAIL, "module file %s changed (sha256 %s, expected %s)" % (path, have[:12], want[:12])
    pkg, want_pkg = conf.get("package_dir"), conf.get("package_digest")
    if pkg and want_pkg:
        if not os.path.isdir(pkg):
            return FAIL, "module package %s missing" % pkg
        why = _unsafe(pkg)
        if why:
            return FAIL, "module package %s: %s" % (pkg, why)
        for root, dirs, files in os.walk(pkg):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files + dirs:
                sub = os.lstat(os.path.join(root, name))
                if sub.st_uid != 0 or sub.st_mode & 0o022:
                    return FAIL, "module package file %s is not root-owned/read-only" \
                        % os.path.join(root, name)
        have = digest(pkg)
        if have != want_pkg:
            return FAIL, "module package %s changed (digest %s, expected %s)" % (
                pkg, have[:12], want_pkg[:12])
    if not want:
        return OK, "module file %s%s present, root-owned (no checksum configured)" % (path, release)
    return OK, "module file %s%s present, root-owned, checksum matches" % (path, release)


def check_account_stack(conf):
    problems, info, _entry = analyse_account(conf)
    if problems:
        return FAIL, "; ".join(problems), info
    kept = info.get("kept_before_adopt")
    return OK, "adopt rule last in the %s account stack (%s), no short-circuit before it%s" % (
        conf["pam_service"], info["adopt_rule"].split("    # ")[1],
        (" (kept: %s)" % "; ".join(kept)) if kept else ""), info


def check_pam_systemd(conf):
    if conf.get("pam_systemd", "absent") == "any":
        return OK, "pam_systemd not managed (adopt_pam_disable_pam_systemd: false)"
    rules, problems = pam_systemd_rules(conf)
    if rules:
        return FAIL, "%s reachable in the %s session stack (%s)" % (
            "/".join(sorted(set(e.line.module_name[:-3] for e in rules))), conf["pam_service"],
            ", ".join(_where(e) for e in rules))
    if problems:
        return WARN, "session stack: %s" % "; ".join(problems)
    return OK, "pam_systemd not reachable from %s" % conf["pam_service"]


def check_logind(conf):
    want = conf.get("logind", "masked")
    if want == "any":
        return OK, "logind not managed (adopt_logind_mask: false)"
    rc, out = run(["systemctl", "is-enabled", "systemd-logind.service"], conf["timeout"])
    if rc is None:
        return WARN, "cannot run systemctl: %s" % out.strip()
    state = out.strip().splitlines()[-1] if out.strip() else "unknown"
    _rc2, active = run(["systemctl", "is-active", "systemd-logind.service"], conf["timeout"])
    active = (active or "").strip().splitlines()[-1] if (active or "").strip() else "unknown"
    if state != "masked" or active == "active":
        return FAIL, "systemd-logind is %s/%s, expected masked/inactive" % (state, active)
    return OK, "systemd-logind masked and %s" % active


def _account(conf):
    ps = pam_stack()
    return ps.effective_stack(pam_source(conf), conf["pam_service"], "account")


def check_admin_access(conf):
    """The admin bypass file the managed pam_access (or pam_listfile) rule
    reads is there and is what role adopt_pam wrote: a missing access file
    makes pam_access refuse everyone without a job, root included; a
    rewritten one may admit everyone."""
    report = collection_util("_pam_health").admin_access_report(
        conf.get("root", "/"), _account(conf), conf.get("pam_state_dir", "/var/lib/slurm-adopt/pam"))
    if report["mode"] is None:
        return OK, "no admin access rule written by role adopt_pam"
    if report["problems"]:
        return FAIL, "; ".join(report["problems"])
    return OK, "%s reads %s, as role adopt_pam wrote it" % (report["mode"], report["file"])


def check_bypass(conf):
    """No rule before the adopt rule lets an ordinary user without a job in
    (a pam_access whose rules admit everyone, pam_listfile with
    onerr=succeed on a missing list or sense=deny, a uid bound that reaches
    the site's first regular uid, a plain short-circuit)."""
    found = collection_util("_pam_health").fail_open_report(conf.get("root", "/"), _account(conf))
    if found:
        return FAIL, "; ".join("%s:%d %s: %s" % (f["file"], f["line"], f["text"].strip(), f["why"]) for f in found)
    return OK, "no rule before the adopt rule lets a user without a job in"


def _pam_module_path(name, conf):
    root = conf.get("root", "/")
    if name.startswith("/"):
        return name if os.path.exists(pam_stack().rooted(root, name)) else None
    for directory in conf["pam_module_dirs"]:
        cand = os.path.join(directory, name)
        if os.path.exists(pam_stack().rooted(root, cand)):
            return cand
    return None


def check_interface(conf):
    """What the adopt rule needs to run: pam_python.so, or pam_exec.so and
    the interpreter and script it calls, or the C module's .so."""
    _problems, _info, entry = analyse_account(conf)
    if entry is None:
        return FAIL, "no adopt rule, so nothing to load"
    line = entry.line
    module = _pam_module_path(line.module, conf)
    if module is None:
        return FAIL, "%s (the adopt rule's module, %s) not found in %s" % (
            line.module, _where(entry), ", ".join(conf["pam_module_dirs"]))
    if line.module_name == "pam_exec.so":
        words = [a for a in line.args if a.startswith("/")]
        missing = [w for w in words[:2] if not os.path.exists(w)]
        if not words or missing:
            return FAIL, "pam_exec rule %s: %s missing" % (_where(entry), ", ".join(missing) or "no program")
        if not os.access(words[0], os.X_OK):
            return FAIL, "pam_exec rule %s: %s is not executable" % (_where(entry), words[0])
        return OK, "pam_exec present: %s runs %s" % (module, " ".join(words[:2]))
    if line.module_name == "pam_python.so":
        script = line.args[0] if line.args else ""
        if not os.path.isfile(script):
            return FAIL, "pam_python rule %s: script %s missing" % (_where(entry), script or "(none)")
        return OK, "pam_python present: %s loads %s" % (module, script)
    if line.module_name == CLIENT_MODULE:
        return _check_client(conf, entry, module)
    return OK, "%s present: %s" % (line.module_name, module)


# ---------------------------------------------------------------------------
# interface service: the C client and the adoption service (docs/service.md)
# ---------------------------------------------------------------------------

CLIENT_MODULE = "pam_slurm_adopt_client.so"
# What the client may link (DT_NEEDED): libc and libpam, and the loader.
CLIENT_LIBS = re.compile(r"^(libc\.so\.\d+|libpam\.so\.\d+|ld-linux[\w.-]*\.so\.\d+|ld64\.so\.\d+)$")


def elf_dynamic(path, limit=16 << 20):
    """(DT_NEEDED names, DT_RPATH/DT_RUNPATH strings) of an ELF file, read
    from its program headers as the loader reads them (nothing is run, unlike
    ldd).  ValueError for anything that is not a well-formed ELF file."""
    with open(path, "rb") as handle:
        data = handle.read(limit)
    if data[:4] != b"\x7fELF" or data[4:5] not in (b"\x01", b"\x02") or data[5:6] not in (b"\x01", b"\x02"):
        raise ValueError("not an ELF file")
    wide, end = data[4:5] == b"\x02", "<" if data[5:6] == b"\x01" else ">"
    try:
        if wide:   # phoff, phentsize, phnum; p_type, p_offset, p_vaddr, p_filesz; d_tag, d_val
            phoff, (phentsize, phnum) = struct.unpack_from(end + "Q", data, 32)[0], struct.unpack_from(end + "HH", data, 54)
            phdr, fields, dyn = end + "IIQQQQQQ", (0, 2, 3, 5), end + "qQ"
        else:
            phoff, (phentsize, phnum) = struct.unpack_from(end + "I", data, 28)[0], struct.unpack_from(end + "HH", data, 42)
            phdr, fields, dyn = end + "IIIIIIII", (0, 1, 2, 4), end + "iI"
        loads, dynamic = [], None
        for i in range(phnum):
            entry = struct.unpack_from(phdr, data, phoff + i * phentsize)
            ptype, offset, vaddr, filesz = (entry[f] for f in fields)
            if ptype == 1:              # PT_LOAD
                loads.append((vaddr, offset, filesz))
            elif ptype == 2:            # PT_DYNAMIC
                dynamic = (offset, filesz)
        if dynamic is None:
            return [], []
        tags = []
        step = struct.calcsize(dyn)
        for pos in range(dynamic[0], dynamic[0] + dynamic[1] - step + 1, step):
            tag, val = struct.unpack_from(dyn, data, pos)
            if tag == 0:                # DT_NULL
                break
            tags.append((tag, val))
        strtab = [v for t, v in tags if t == 5]       # DT_STRTAB (an address)
        base = [off + strtab[0] - va for va, off, size in loads if strtab and va <= strtab[0] < va + size]
        if not base:
            raise ValueError("no string table")

        def string(index):
            start = base[0] + index
            stop = data.index(b"\0", start)
            return data[start:stop].decode("utf-8", "replace")
        return ([string(v) for t, v in tags if t == 1],                 # DT_NEEDED
                [string(v) for t, v in tags if t in (15, 29)])         # DT_RPATH, DT_RUNPATH
    except (struct.error, IndexError) as exc:
        raise ValueError("truncated ELF file (%s)" % exc)


def _check_client(conf, entry, module):
    """The client the adopt rule loads is root's, not writable by others, and
    the very file role adopt_module built (sha256 = the build record's)."""
    path = pam_stack().rooted(conf.get("root", "/"), module)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        return FAIL, "client %s is not a root-owned regular file without group/world write (%o, uid %d)" % (
            module, st.st_mode & 0o7777, st.st_uid)
    try:
        with open(conf["client_record"]) as handle:
            want = json.load(handle).get("output")
    except (IOError, OSError, ValueError) as exc:
        return FAIL, "client %s: no usable build record %s (%s)" % (module, conf["client_record"], exc)
    have = sha256_file(path)
    if have != want:
        return FAIL, "client %s is not the one built (sha256 %s, recorded %s in %s)" % (
            module, have[:12], str(want)[:12], conf["client_record"])
    try:
        needed, paths = elf_dynamic(path)
    except (IOError, OSError, ValueError) as exc:
        return FAIL, "client %s: cannot read its dynamic section (%s)" % (module, exc)
    others = [lib for lib in needed if not CLIENT_LIBS.match(lib)]
    if others or paths or not any(lib.startswith("libpam.so.") for lib in needed):
        return FAIL, "client %s must link libc and libpam only, without a search path: it links %s%s" % (
            module, ", ".join(needed) or "nothing", "; RPATH/RUNPATH %s" % ":".join(paths) if paths else "")
    return OK, "client %s present, root-owned, checksum matches the build record, links only %s" % (
        module, ", ".join(sorted(needed)))


def _systemctl(conf, *args):
    root = conf.get("systemd_root", "/")
    return run(["systemctl"] + (["--root", root] if root.rstrip("/") else []) + list(args), conf["timeout"])


def check_service(conf):
    """Interface service: slurm-adopt.socket enabled (and active where
    systemd runs), its socket root:root 0600.  Without systemd as PID 1 a
    missing socket is a warning (logins use the client's fallback child)."""
    _problems, _info, entry = analyse_account(conf)
    if entry is None or entry.line.module_name != CLIENT_MODULE:
        return OK, "interface is not service (no %s rule)" % CLIENT_MODULE
    rc, out = _systemctl(conf, "is-enabled", "slurm-adopt.socket")
    if rc is None:
        return WARN, "cannot run systemctl: %s" % oneline(out)
    state = (out or "").strip().splitlines()[-1] if (out or "").strip() else "unknown"
    if state != "enabled":
        return FAIL, "slurm-adopt.socket is %s, expected enabled" % state
    live = os.path.isdir("/run/systemd/system") and not conf.get("systemd_root", "/").rstrip("/")
    if live:
        _rc, active = _systemctl(conf, "is-active", "slurm-adopt.socket")
        active = (active or "").strip().splitlines()[-1] if (active or "").strip() else "unknown"
        if active != "active":
            return FAIL, "slurm-adopt.socket is %s, expected active" % active
    sock = conf["service_socket"]
    try:
        st = os.lstat(sock)
    except OSError as exc:
        if live:
            return FAIL, "service socket %s: %s" % (sock, exc.strerror)
        return WARN, ("service socket %s: %s (systemd is not PID 1 here: logins use the client's fallback "
                      "child)" % (sock, exc.strerror))
    if not stat.S_ISSOCK(st.st_mode) or (st.st_uid, st.st_gid) != (0, 0) or st.st_mode & 0o777 != 0o600:
        return FAIL, "service socket %s must be a socket root:root 0600 (mode %o, uid %d, gid %d)" % (
            sock, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return OK, "slurm-adopt.socket enabled%s, %s root:root 0600" % (" and active" if live else "", sock)


def check_slurm_config(conf):
    rc, out = run(["scontrol", "show", "config"], conf["timeout"])
    if rc != 0:
        return WARN, "scontrol show config failed: %s" % oneline(out)
    values = parse_show(out)
    missing = []
    for key, words in sorted(conf["slurm_flags"].items()):
        have = [w.strip().lower() for w in re.split(r"[,\s]+", values.get(key, "")) if w]
        for word in words:
            if word.lower() not in have:
                missing.append("%s=%s lacks %s" % (key, values.get(key, "(unset)"), word))
    if missing:
        return FAIL, "running Slurm config: %s" % "; ".join(missing)
    return OK, "running Slurm config has %s" % ", ".join(
        "%s=%s" % (k, values.get(k)) for k in sorted(conf["slurm_flags"]))


def check_slurmd(conf):
    """slurmd answers `scontrol show slurmd` (three tries over a few
    seconds: a slurmd restart is not a broken node)."""
    for attempt in range(3):
        rc, out = run(["scontrol", "show", "slurmd"], conf["timeout"])
        if rc == 0:
            return OK, "slurmd answers"
        if attempt < 2:
            time.sleep(2)
    return FAIL, "slurmd does not answer: %s" % oneline(out)


def _spool_dir(conf):
    """slurmd's SlurmdSpoolDir, or (None, why) when the controller cannot say."""
    rc, out = run(["scontrol", "show", "config"], conf["timeout"])
    if rc != 0:
        return None, "scontrol show config failed: %s" % oneline(out)
    value = parse_show(out).get("SlurmdSpoolDir") or "/var/spool/slurmd"
    return value.replace("%n", nodename(conf)).replace("%h", socket.gethostname()), None


def check_stepd_sockets(conf):
    spool, why = _spool_dir(conf)
    if spool is None:
        return WARN, "cannot tell where the stepd sockets are: %s" % why
    try:
        names = os.listdir(spool)
    except OSError as exc:
        return FAIL, "spool dir %s unreadable: %s" % (spool, exc.strerror)
    socks = [n for n in names if re.match(r".+_\d+\.\d+(\.\d+)?$", n)]
    bad = []
    for name in socks:
        path = os.path.join(spool, name)
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                continue
        except OSError:
            continue
        if not os.access(path, os.R_OK | os.W_OK):
            bad.append(name)
    if bad:
        return FAIL, "stepd sockets not accessible: %s" % ", ".join(bad[:5])
    return OK, "spool %s readable, %d stepd socket(s)" % (spool, len(socks))


def check_explain(conf):
    """The module's `explain` for the probe user (no job expected), with the
    options of the deployed adopt rule."""
    user = conf.get("probe_user")
    if not user:
        return OK, "no probe user configured"
    res = explain(conf, user)
    if res.get("error") or res["rc"] not in (0, 1) or not res["decision"]:
        return FAIL, "explain %s failed (rc %s): %s" % (
            user, res.get("rc"), res.get("error") or " | ".join(res["transcript"][-3:]))
    lines = res["transcript"]
    failures = [ln for ln in lines if ln.strip().lower().startswith(("[error]", "[fatal]"))
                or "applying action_generic_failure" in ln]
    if failures:
        return FAIL, "explain %s: %s; decision: %s (%s)" % (user, failures[0].strip(), res["decision"],
                                                            res["detail"])
    return OK, "explain %s with the deployed options: %s (%s)" % (user, res["decision"], res["detail"])


# ---------------------------------------------------------------------------
# explain: what the module would decide for a user, with the DEPLOYED options
# (playbooks/explain.yml, the helpdesk view; the `explain` check)
# ---------------------------------------------------------------------------

ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def deployed_invocation(conf, entry):
    """How the deployed adopt rule runs the module: {interface, script,
    options, env}.  pam_python.so SCRIPT OPTIONS...; pam_exec.so [its flags]
    [/usr/bin/env NAME=VALUE...] PYTHON [-I -S] SCRIPT pam-exec OPTIONS...;
    any other module (SchedMD's pam_slurm_adopt.so, the service client) takes
    the options as its arguments and is explained by the installed module."""
    line = entry.line
    args = list(line.args)
    name = line.module_name
    out = {"interface": name[:-3] if name.endswith(".so") else name,
           "script": conf["module_path"], "options": args, "env": {}}
    if name == "pam_python.so":
        out["script"] = args[0] if args else conf["module_path"]
        out["options"] = args[1:]
    elif name == "pam_exec.so":
        if "pam-exec" in args[1:]:
            at = args.index("pam-exec")
            out["script"] = args[at - 1]
            out["options"] = args[at + 1:]
            words = args[:at - 1]
            if any(os.path.basename(w) == "env" for w in words):
                start = [i for i, w in enumerate(words) if os.path.basename(w) == "env"][0]
                out["env"] = dict(w.split("=", 1) for w in words[start + 1:] if ENV_WORD.match(w))
        else:
            out["options"] = []
    return out


def _explain_summary(lines):
    """(decision, detail, why, user_message, option problems) from the
    transcript of `pam_slurm_adopt.py explain`."""
    decision, detail, why, message, problems = "", "", "", "", []
    for ln in lines:
        text = ln.strip()
        match = re.match(r"^decision: (\S+) \((.*)\)$", text)
        if match:
            decision, detail = match.group(1), match.group(2)
        elif text.startswith("-> the user would see: "):
            message = text[len("-> the user would see: "):]
        elif text.startswith("[option] "):
            problems.append(text[len("[option] "):])
        elif text.startswith("[") and "] " in text:
            said = text.split("] ", 1)[1]
            if not said.startswith(("send_user_msg:", "would adopt process", "reading ")):
                why = said
    return decision, detail, why, message, problems


def explain(conf, user, rhost=None, rport=None, source=None):
    """Run the installed module's `explain USER` with the options (and the
    pam_exec environment) of the deployed adopt rule of conf["pam_service"].
    Returns a dict (JSON for playbooks/explain.yml); "error" says why it
    could not run."""
    res = {"node": nodename(conf), "user": user, "service": conf["pam_service"], "adopt_rule": None,
           "interface": None, "script": None, "options": [], "decision": "", "detail": "", "why": "",
           "user_message": "", "option_problems": [], "rc": None, "transcript": [], "error": None}
    try:
        problems, info, entry = analyse_account(conf, source)
    except (OSError, ValueError) as exc:
        res["error"] = "cannot read the %s PAM stack: %s" % (conf["pam_service"], exc)
        return res
    res["stack_problems"] = problems
    if entry is None:
        res["error"] = "no adopt rule in the effective %s account stack" % conf["pam_service"]
        return res
    res["adopt_rule"] = info["adopt_rule"]
    how = deployed_invocation(conf, entry)
    res.update(interface=how["interface"], script=how["script"], options=how["options"])
    why = _unsafe(how["script"]) if os.path.isfile(how["script"]) else "no such file"
    if why:
        res["error"] = "module %s: %s" % (how["script"], why)
        return res
    argv = [sys.executable or "python3", "-I", "-S", how["script"], "explain", user,
            "--service", conf["pam_service"]]
    if rhost:
        argv += ["--rhost", rhost, "--rport", str(rport or 0)]
    env = dict(os.environ, **how["env"])
    try:
        proc = subprocess.run(argv + how["options"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=conf["timeout"], env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        res["error"] = "explain did not finish: %s" % exc
        return res
    res["rc"] = proc.returncode
    res["transcript"] = proc.stdout.splitlines()
    (res["decision"], res["detail"], res["why"], res["user_message"],
     res["option_problems"]) = _explain_summary(res["transcript"])
    if not res["decision"]:
        res["error"] = "explain gave no decision (rc %s): %s" % (proc.returncode, oneline(proc.stdout))
    return res


# Image mode: the checks that need a running node, at first boot
# (slurm_adopt_first_boot.py, next to this script).
FIRST_BOOT = "slurm_adopt_first_boot.py"


def first_boot():
    here = os.path.dirname(os.path.realpath(__file__))
    if "first_boot" not in _LOADED:
        spec = importlib.util.spec_from_file_location("slurm_adopt_first_boot", os.path.join(here, FIRST_BOOT))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _LOADED["first_boot"] = mod
    return _LOADED["first_boot"]


def check_logins(conf):
    return first_boot().check_logins(conf, collection_util)


CHECKS = [
    ("module_file", check_module_file),
    ("account_stack", check_account_stack),
    ("admin_access", check_admin_access),
    ("bypass", check_bypass),
    ("pam_systemd", check_pam_systemd),
    ("logind", check_logind),
    ("interface", check_interface),
    ("service", check_service),
    ("slurm_config", check_slurm_config),
    ("slurmd", check_slurmd),
    ("stepd_sockets", check_stepd_sockets),
    ("explain", check_explain),
    ("logins", check_logins),
]
SLURM_CHECKS = ("slurm_config", "slurmd", "stepd_sockets", "explain")


ALIASES = {"pam_python": "interface"}   # names of earlier releases


def run_checks(conf, only=None, skip=()):
    only = [ALIASES.get(name, name) for name in only] if only else only
    results = []
    for name, func in CHECKS:
        if (only and name not in only) or name in skip:
            continue
        if name in SLURM_CHECKS and not conf.get("check_slurm", True):
            continue
        if name == "logins" and not conf.get("first_boot"):
            continue
        try:
            res = func(conf)
        except Exception as exc:  # pylint: disable=broad-except
            res = (WARN, "check crashed: %s: %s" % (type(exc).__name__, exc))
        entry = {"check": name, "status": res[0], "message": res[1]}
        if len(res) > 2:
            entry["details"] = res[2]
        results.append(entry)
    return results


def overall(results):
    states = [r["status"] for r in results]
    if FAIL in states:
        return FAIL
    if WARN in states:
        return WARN
    return OK


def load_config(path):
    conf = dict(DEFAULTS)
    if path and os.path.exists(path):
        with open(path) as handle:
            conf.update(json.load(handle))
    return conf


# ---------------------------------------------------------------------------
# drain / resume
# ---------------------------------------------------------------------------

def node_state(conf, node):
    """(state, reason) of `node` from scontrol, or (None, error)."""
    rc, out = run(["scontrol", "show", "node", node], conf["timeout"])
    if rc != 0:
        return None, (out or "").strip()
    state, reason = "", ""
    for line in out.splitlines():
        line = line.strip()
        match = re.search(r"\bState=(\S+)", line)
        if match and not state:
            state = match.group(1)
        if line.startswith("Reason="):
            reason = re.sub(r"\s*\[[^\]]*@[^\]]*\]\s*$", "", line[len("Reason="):])
    return state, reason


def is_drained(state):
    return "DRAIN" in state.upper()


def drain_reason(results):
    bad = [r for r in results if r["status"] == FAIL]
    text = "; ".join("%s: %s" % (r["check"], r["message"]) for r in bad)
    text = text.replace('"', "'")
    return ("%s %s" % (REASON_PREFIX, text))[:400]


def drain_or_resume(conf, results, dry_run=False, out=print):
    """Apply the drain policy; returns the action taken (a word)."""
    node = nodename(conf)
    state, reason = node_state(conf, node)
    if state is None:
        out("slurm-adopt-check: cannot read the state of node %s: %s" % (node, reason))
        return "unknown"
    ours = reason.startswith(REASON_PREFIX)
    status = overall(results)
    if status == FAIL:
        want = drain_reason(results)
        if is_drained(state) and not ours:
            out("slurm-adopt-check: adoption broken, node %s already drained by someone else "
                "(%s); leaving it alone" % (node, reason))
            return "left"
        if is_drained(state) and reason == want:
            return "drained"
        cmd = ["scontrol", "update", "NodeName=" + node, "State=DRAIN", "Reason=" + want]
        action = "drain"
    elif status == OK and is_drained(state) and ours:
        cmd = ["scontrol", "update", "NodeName=" + node, "State=RESUME"]
        action = "resume"
    else:
        return "none"
    words = " ".join(shlex.quote(c) for c in cmd[2:])
    out("slurm-adopt-check: %s node %s: %s" % (action, node, words))
    if dry_run:
        return action
    rc, text = run(cmd, conf["timeout"])
    if rc != 0:
        out("slurm-adopt-check: %s failed: %s" % (action, (text or "").strip()))
        return "error"
    _syslog("%s node %s: %s" % (action, node, cmd[-1]))
    return action


def _syslog(text):
    try:
        import syslog
        syslog.openlog("slurm-adopt-check", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_WARNING, text)
        syslog.closelog()
    except Exception:  # pylint: disable=broad-except
        pass


# ---------------------------------------------------------------------------
# metrics: Prometheus node_exporter textfile collector (docs/healthcheck.md)
# ---------------------------------------------------------------------------

METRICS_FILE = "slurm_adopt.prom"
# The module's login counters (roles/adopt_module/files/slurm_adopt/counters.py):
# one file per result plus "errors"; a file's size is its count.
LOGIN_RESULTS = ("adopted", "allowed", "ignored", "denied")
COUNTER_FILES = LOGIN_RESULTS + ("errors",)
COUNTER_STATE = "state.json"
# A counter file is rotated (linked to NAME.old, replaced by an empty one)
# past this size; the module stops counting at 1 MiB (counters.MAX_SIZE).
COUNTER_ROTATE = 64 * 1024
STATES = (OK, WARN, FAIL)


def _create_empty(path):
    """An empty root-owned counter file (never through a symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)
    os.close(fd)


def _counter_stat(path):
    """lstat of a counter file, or None when missing or not a regular file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def read_login_counters(directory):
    """Read and advance the module's login counters.

    Returns {"available": bool, "why": str, "since": {name: n}, "total":
    {name: n}}: logins counted since the previous call and since the
    counters were created (boot, for the default directory under /run).
    Creates the directory and the counter files (the module only appends to
    files that exist); remembers the size seen of each file (by inode) in
    state.json, so that a login counted during this run is counted by the
    next one, and rotates a file past COUNTER_ROTATE bytes without losing a
    login (the module's O_APPEND write lands in the old inode, which is read
    once more by the next run, then removed)."""
    out = {"available": False, "why": "", "since": dict.fromkeys(COUNTER_FILES, 0),
           "total": dict.fromkeys(COUNTER_FILES, 0)}
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
    except OSError as exc:
        out["why"] = "cannot create %s: %s" % (directory, exc.strerror)
        return out
    why = _unsafe(directory, follow=False)
    if why:
        out["why"] = "counter directory %s: %s" % (directory, why)
        return out
    state_path = os.path.join(directory, COUNTER_STATE)
    try:
        with open(state_path) as handle:
            state = json.load(handle)
        seen, total = dict(state["seen"]), dict(state["total"])
    except (OSError, ValueError, KeyError, TypeError):
        seen, total = {}, {}
    new_seen = {}
    try:
        for name in COUNTER_FILES:
            cur, old = os.path.join(directory, name), os.path.join(directory, name + ".old")
            delta = 0
            st_old = _counter_stat(old)
            if st_old is not None:          # rotated by the previous run: read it a last time
                delta += max(0, st_old.st_size - int(seen.get(str(st_old.st_ino), 0)))
                os.unlink(old)
            st_cur = _counter_stat(cur)
            if st_cur is None:
                if os.path.lexists(cur):
                    os.unlink(cur)
                _create_empty(cur)
                st_cur = os.lstat(cur)
            else:
                delta += max(0, st_cur.st_size - int(seen.get(str(st_cur.st_ino), 0)))
            new_seen[str(st_cur.st_ino)] = st_cur.st_size
            if st_cur.st_size >= COUNTER_ROTATE:
                tmp = cur + ".new"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                _create_empty(tmp)
                os.link(cur, old)
                os.rename(tmp, cur)         # the module always finds a file
                new_seen[str(os.lstat(cur).st_ino)] = 0
            out["since"][name] = delta
            out["total"][name] = int(total.get(name, 0)) + delta
    except OSError as exc:
        out["why"] = "login counters in %s: %s" % (directory, exc)
        return out
    tmp = state_path + ".tmp"
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as handle:
            json.dump({"seen": new_seen, "total": out["total"]}, handle)
        os.rename(tmp, state_path)
    except OSError as exc:
        out["why"] = "cannot save %s: %s" % (state_path, exc)
        return out
    out["available"] = True
    return out


def module_identity(conf):
    """{version, sha256, package_digest, release} of the installed module
    ("" for what cannot be read)."""
    out = {"version": "", "sha256": "", "package_digest": "", "release": ""}
    path, pkg = conf["module_path"], conf.get("package_dir")
    real = os.path.realpath(path)
    if real != os.path.abspath(path):
        out["release"] = os.path.basename(os.path.dirname(real))
    try:
        out["sha256"] = sha256_file(path)
    except OSError:
        pass
    if pkg and os.path.isdir(pkg):
        out["package_digest"] = digest(pkg)
        try:
            with open(os.path.join(pkg, "__init__.py")) as handle:
                match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", handle.read(), re.M)
            out["version"] = match.group(1) if match else ""
        except OSError:
            pass
    return out


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric(lines, name, kind, helptext, samples):
    """HELP, TYPE and the samples ([(labels dict, value)]) of one metric."""
    lines.append("# HELP %s %s" % (name, helptext))
    lines.append("# TYPE %s %s" % (name, kind))
    for labels, value in samples:
        inner = ",".join('%s="%s"' % (k, _label(v)) for k, v in sorted(labels.items()))
        lines.append("%s%s %s" % (name, "{%s}" % inner if inner else "", value))


def metrics_text(results, identity, counters, finished, seconds):
    """The metrics of one drift-check run, in the Prometheus text format."""
    lines = []
    _metric(lines, "slurm_adopt_check_status", "gauge",
            "Result of each drift check of pam_slurm_adopt (1 for its current state, ok/warn/fail).",
            [({"check": r["check"], "state": s}, int(r["status"] == s)) for r in results for s in STATES])
    _metric(lines, "slurm_adopt_status", "gauge",
            "Overall result of the drift check (1 for the current state; fail drains the node).",
            [({"state": s}, int(overall(results) == s)) for s in STATES])
    _metric(lines, "slurm_adopt_module_info", "gauge",
            "The installed pam_slurm_adopt module: version, sha256 of the module file, digest of its package.",
            [(identity, 1)])
    _metric(lines, "slurm_adopt_last_check_timestamp_seconds", "gauge",
            "When the drift check last finished (Unix time).", [({}, "%.3f" % finished)])
    _metric(lines, "slurm_adopt_check_duration_seconds", "gauge",
            "How long the last drift check took.", [({}, "%.3f" % seconds)])
    _metric(lines, "slurm_adopt_login_counting", "gauge",
            "1 when the module's login counters are in place (else the login counts are not collected).",
            [({}, int(counters["available"]))])
    if counters["available"]:
        _metric(lines, "slurm_adopt_logins_since_last_check", "gauge",
                "Login decisions of the module since the previous drift check, by result.",
                [({"result": r}, counters["since"][r]) for r in LOGIN_RESULTS])
        _metric(lines, "slurm_adopt_logins_total", "counter",
                "Login decisions of the module since the counters were created (boot), by result.",
                [({"result": r}, counters["total"][r]) for r in LOGIN_RESULTS])
        _metric(lines, "slurm_adopt_login_errors_since_last_check", "gauge",
                "Logins in which the module logged an error, since the previous drift check.",
                [({}, counters["since"]["errors"])])
        _metric(lines, "slurm_adopt_login_errors_total", "counter",
                "Logins in which the module logged an error, since the counters were created (boot).",
                [({}, counters["total"]["errors"])])
    return "\n".join(lines) + "\n"


def write_textfile(directory, text, name=METRICS_FILE):
    """Write directory/name atomically (a temporary file that the textfile
    collector ignores, then rename); returns the path."""
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise
    return path


def write_metrics(conf, results, seconds):
    """The metrics of this run into conf["textfile_dir"]: a word for the
    report (the path written, or why not). Never raises."""
    directory = conf.get("textfile_dir")
    if not directory:
        return "off"
    try:
        if not os.path.isdir(directory):
            return "skipped: %s does not exist (node_exporter not installed?)" % directory
        counters = read_login_counters(conf.get("counter_dir") or DEFAULTS["counter_dir"])
        text = metrics_text(results, module_identity(conf), counters, time.time(), seconds)
        path = write_textfile(directory, text)
        return path if counters["available"] else "%s (no login counts: %s)" % (path, counters["why"])
    except Exception as exc:  # pylint: disable=broad-except
        return "failed: %s: %s" % (type(exc).__name__, exc)


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

def row_line(label, res):
    """One row of the fleet-wide health table."""
    message = res["message"] if len(res["message"]) <= 150 else res["message"][:147] + "..."
    return "%-12s %-5s %-16s %s" % (label, res["status"].upper(), res["check"], message)


def table(results, node):
    width = max(len(r["check"]) for r in results) if results else 5
    lines = ["slurm-adopt check on %s: %s" % (node, overall(results).upper())]
    for res in results:
        lines.append("  %-4s  %-*s  %s" % (res["status"].upper(), width, res["check"],
                                           res["message"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="slurm_adopt_check.py",
                                     description="Is pam_slurm_adopt still in force here?")
    sub = parser.add_subparsers(dest="command")
    for name in ("check", "drain"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--config", default=DEFAULT_CONFIG)
        cmd.add_argument("--json", action="store_true")
        cmd.add_argument("--probe-user")
        cmd.add_argument("--module-sha256")
        cmd.add_argument("--package-digest")
        cmd.add_argument("--logind", choices=["masked", "any"])
        cmd.add_argument("--label", help="name shown in the JSON 'lines' (default: the node name)")
        cmd.add_argument("--only", action="append", help="run only this check (repeatable)")
        cmd.add_argument("--dry-run", action="store_true")
        cmd.add_argument("--no-metrics", action="store_true",
                         help="do not write the node_exporter metrics (runs with --only never do)")
    dig = sub.add_parser("digest")
    dig.add_argument("directory")
    exp = sub.add_parser("explain", help="what the module would decide for USER, with the deployed options")
    exp.add_argument("user")
    exp.add_argument("--config", default=DEFAULT_CONFIG)
    exp.add_argument("--rhost", help="address of the ssh client (for the callerid RPC)")
    exp.add_argument("--rport", type=int, default=0)
    exp.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "digest":
        print(digest(args.directory))
        return 0
    if args.command == "explain":
        res = explain(load_config(args.config), args.user, args.rhost, args.rport)
        if args.json:
            print(json.dumps(res, indent=2, sort_keys=True))
        else:
            print("\n".join(res["transcript"]) if res["transcript"] else "")
            print("error: %s" % res["error"] if res["error"] else
                  "%s: %s (%s): %s" % (res["node"], res["decision"], res["detail"], res["why"]))
        return 3 if res["error"] else 0
    if args.command not in ("check", "drain"):
        parser.print_usage()
        return 3
    conf = load_config(args.config)
    for key in ("probe_user", "module_sha256", "package_digest", "logind"):
        if getattr(args, key):
            conf[key] = getattr(args, key)
    if args.command == "drain":
        # run by slurmd (HealthCheckProgram): the periodic run stays cheap
        # (no explain probe), and slurmd itself is the caller (at its start it
        # does not answer yet)
        skip = {"slurmd", "explain"}
        if conf.get("first_boot"):
            skip |= first_boot().skip_in_drain(conf)
    else:
        skip = set()
    started = time.time()
    results = run_checks(conf, args.only, skip)
    if conf.get("first_boot"):
        results = first_boot().settle(conf, results)
    status = overall(results)
    report = {"node": nodename(conf), "status": status, "checks": results,
              "seconds": round(time.time() - started, 3)}
    report["lines"] = [row_line(args.label or report["node"], res) for res in results]
    if args.command == "drain":
        report["action"] = drain_or_resume(conf, results, args.dry_run,
                                           out=(lambda t: None) if args.json else print)
    if not (args.only or args.no_metrics or args.dry_run):
        report["metrics"] = write_metrics(conf, results, report["seconds"])
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(table(results, report["node"]))
        if args.command == "drain":
            print("action: %s" % report["action"])
    if args.command == "drain":
        return 0
    return {OK: 0, WARN: 1, FAIL: 2}[status]


if __name__ == "__main__":
    sys.exit(main())
