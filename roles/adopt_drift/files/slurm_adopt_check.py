# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
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

    slurm_adopt_check.py digest DIR
        The digest of the module's implementation package (used by the role
        to record what the collection ships).

The configuration (JSON, written by the role; keys and defaults in DEFAULTS
below) says what "in force" means on this node: the module path and its
expected checksums, the PAM service, the rules allowed after the adopt rule
(the admin pam_access rule), whether systemd-logind must be masked and
pam_systemd absent, and the Slurm flags that must be set.

PAM files are read with the collection's one PAM parser
(plugins/module_utils/pam_stack.py, installed next to this script as
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
    "timeout": 15,
}


# ---------------------------------------------------------------------------
# PAM configuration: the collection's one parser (plugins/module_utils/pam_stack.py),
# installed next to this script as slurm_adopt_pam_stack.py
# ---------------------------------------------------------------------------

# The collection's module_utils this check uses, as installed next to it
# (slurm_adopt_<name>.py) or, run from the collection itself, in
# plugins/module_utils/.  They import each other under their collection names
# (ansible_collections.hpc.slurm_adopt.plugins.module_utils.<name>); those
# imports are answered with these copies, without touching sys.modules.
PAM_STACK_NAME = "slurm_adopt_pam_stack.py"
COLLECTION_UTILS = "ansible_collections.hpc.slurm_adopt.plugins.module_utils"
UTILS = ("pam_stack", "_pam_eval", "pam_guard", "pam_health")
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
    try:
        import builtins
    except ImportError:                      # pragma: no cover (Python 2)
        import __builtin__ as builtins  # noqa: F401
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
    """The PAM parser (plugins/module_utils/pam_stack.py of the collection)."""
    if path and "pam_stack" not in _LOADED:
        spec = importlib.util.spec_from_file_location("slurm_adopt_check_pam_stack", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _LOADED["pam_stack"] = mod
    return collection_util("pam_stack")


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
    report = collection_util("pam_health").admin_access_report(
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
    found = collection_util("pam_health").fail_open_report(conf.get("root", "/"), _account(conf))
    if found:
        return FAIL, "; ".join("%s:%d %s: %s" % (f["file"], f["line"], f["text"].strip(), f["why"]) for f in found)
    return OK, "no rule before the adopt rule lets a user without a job in"


def _pam_module_path(name, conf):
    if name.startswith("/"):
        return name if os.path.exists(name) else None
    for directory in conf["pam_module_dirs"]:
        cand = os.path.join(directory, name)
        if os.path.exists(cand):
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
    return OK, "%s present: %s" % (line.module_name, module)


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
    user = conf.get("probe_user")
    if not user:
        return OK, "no probe user configured"
    rc, out = run([sys.executable or "python3", conf["module_path"], "explain", user],
                  conf["timeout"])
    lines = (out or "").strip().splitlines()
    decision = [ln for ln in lines if ln.startswith("decision:")]
    if rc not in (0, 1) or not decision:
        return FAIL, "explain %s failed (rc %s): %s" % (user, rc, " | ".join(lines[-3:]))
    failures = [ln for ln in lines if ln.strip().lower().startswith(("[error]", "[fatal]"))
                or "applying action_generic_failure" in ln]
    if failures:
        return FAIL, "explain %s: %s; %s" % (user, failures[0].strip(), decision[0])
    return OK, "explain %s: %s" % (user, decision[0][len("decision: "):])


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
    dig = sub.add_parser("digest")
    dig.add_argument("directory")
    args = parser.parse_args(argv)
    if args.command == "digest":
        print(digest(args.directory))
        return 0
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
