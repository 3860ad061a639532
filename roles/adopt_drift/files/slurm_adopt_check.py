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

The configuration (JSON, written by the role) says what "in force" means on
this node: the module path and its expected checksums, the PAM service, the
rules allowed after the adopt rule (the admin pam_access rule), whether
systemd-logind must be masked, and the Slurm flags that must be set.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time

DEFAULT_CONFIG = "/etc/slurm-adopt/check.json"
REASON_PREFIX = "slurm-adopt:"
OK, WARN, FAIL = "ok", "warn", "fail"

DEFAULTS = {
    "module_path": "/usr/lib/slurm-adopt/pam_slurm_adopt.py",
    "module_sha256": None,           # expected sha256 of module_path
    "package_dir": "/usr/lib/slurm-adopt/slurm_adopt",
    "package_digest": None,          # expected digest() of package_dir
    "pam_dir": "/etc/pam.d",
    "pam_service": "sshd",
    "adopt_match": "pam_slurm_adopt",  # a rule is the adopt rule if module or args contain this
    # rules that may follow the adopt rule / that are allowed to short-circuit
    # before it: a list of regular expressions matched against
    # "<control> <module> <args>" of the rule
    "allowed_after": [r"pam_access\.so"],
    "allowed_before": [],
    "pam_python_paths": [
        "/lib/security/pam_python.so", "/lib/x86_64-linux-gnu/security/pam_python.so",
        "/lib/aarch64-linux-gnu/security/pam_python.so", "/usr/lib/security/pam_python.so",
        "/usr/lib/x86_64-linux-gnu/security/pam_python.so", "/lib64/security/pam_python.so",
        "/usr/lib64/security/pam_python.so"],
    "logind": "masked",              # masked | any
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
# PAM configuration: the effective stack of a service
# ---------------------------------------------------------------------------

class Rule(object):
    """One rule of an effective PAM stack."""

    def __init__(self, ptype, control, module, args, path, lineno, optional, depth):
        self.ptype = ptype          # account / auth / session / password
        self.control = control      # "required", "[success=done default=ignore]", ...
        self.module = module        # "pam_access.so" or a path
        self.args = args            # list of strings
        self.path = path            # file the rule is in
        self.lineno = lineno
        self.optional = optional    # "-type": no error if the module is missing
        self.depth = depth          # substack depth (0: the service itself)

    @property
    def module_name(self):
        return os.path.basename(self.module)

    def where(self):
        return "%s:%d" % (self.path, self.lineno)

    def text(self):
        return " ".join([("-" if self.optional else "") + self.ptype, self.control, self.module]
                        + self.args)

    def as_dict(self):
        return {"type": self.ptype, "control": self.control, "module": self.module,
                "args": self.args, "file": self.path, "line": self.lineno,
                "optional": self.optional, "depth": self.depth}


def _logical_lines(text):
    """Comments removed, backslash continuations joined: (lineno, line)."""
    buf, start = "", None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf, start = "", None
    if buf.strip():
        yield start, buf.strip()


def _tokens(line):
    """Split a rule line; [...] (controls, arguments) stay one token."""
    out, i, n = [], 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "[":
            j = i + 1
            while j < n and line[j] != "]":
                if line[j] == "\\" and j + 1 < n:
                    j += 1
                j += 1
            tok = line[i:j + 1]
            i = j + 1
            # a bracketed argument may be glued to a key: foo=[a b]
            out.append(tok)
            continue
        j = i
        while j < n and not line[j].isspace():
            if line[j] == "[":
                k = line.find("]", j)
                j = n if k < 0 else k + 1
                continue
            j += 1
        out.append(line[i:j])
        i = j
    return out


def _read_local(path):
    with open(path) as handle:
        return handle.read()


def effective_stack(service, ptype, pam_dir="/etc/pam.d", _depth=0, _seen=None, _path=None,
                    read=None):
    """The rules of type `ptype` that PAM runs for `service`, in order, with
    include / substack / @include resolved.  Returns (rules, problems).
    `read(path)` returns a file's text (default: the local file system; the
    testinfra suite passes a reader of the remote host's files)."""
    read = read or _read_local
    seen = _seen if _seen is not None else []
    path = _path or os.path.join(pam_dir, service)
    problems = []
    if path in seen or len(seen) > 30:
        return [], ["include loop at %s" % path]
    try:
        text = read(path)
    except (IOError, OSError) as exc:
        return [], ["cannot read %s: %s" % (path, exc)]
    rules = []
    for lineno, line in _logical_lines(text):
        toks = _tokens(line)
        if toks[0] == "@include":
            if len(toks) < 2:
                problems.append("%s:%d: @include without a file" % (path, lineno))
                continue
            sub, probs = effective_stack(toks[1], ptype, pam_dir, _depth, seen + [path],
                                         _inc_path(pam_dir, toks[1]), read)
            rules.extend(sub)
            problems.extend(probs)
            continue
        if len(toks) < 3:
            problems.append("%s:%d: malformed rule: %s" % (path, lineno, line))
            continue
        kind, control, module, args = toks[0], toks[1], toks[2], toks[3:]
        optional = kind.startswith("-")
        kind = kind.lstrip("-").lower()
        if kind != ptype:
            continue
        if control in ("include", "substack"):
            depth = _depth + (1 if control == "substack" else 0)
            sub, probs = effective_stack(module, ptype, pam_dir, depth, seen + [path],
                                         _inc_path(pam_dir, module), read)
            if control == "substack":
                for rule in sub:
                    rule.depth = max(rule.depth, depth)
            rules.extend(sub)
            problems.extend(probs)
            continue
        rules.append(Rule(kind, control, module, args, path, lineno, optional, _depth))
    return rules, problems


def _inc_path(pam_dir, name):
    return name if name.startswith("/") else os.path.join(pam_dir, name)


def _control_actions(control):
    """{'success': 'done', ...} for a [..] control; the equivalent for simple ones."""
    simple = {
        "required": {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore",
                     "default": "bad"},
        "requisite": {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore",
                      "default": "die"},
        "sufficient": {"success": "done", "new_authtok_reqd": "done", "default": "ignore"},
        "optional": {"success": "ok", "new_authtok_reqd": "ok", "default": "ignore"},
        "binding": {"success": "done", "new_authtok_reqd": "done", "ignore": "ignore",
                    "default": "bad"},
    }
    if not control.startswith("["):
        return simple.get(control.lower(), {"default": "bad"})
    out = {}
    for item in control.strip("[]").split():
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.lower()] = value.lower()
    return out


def short_circuit(rule, index, adopt_index):
    """Why `rule` (at `index`) can end the stack with success, or skip the
    adopt rule (at adopt_index), or None.  new_authtok_reqd=done (Debian's
    pam_unix line) is not a success and not reported."""
    actions = _control_actions(rule.control)
    success = actions.get("success", actions.get("default"))
    if success == "done" and rule.depth == 0:
        return "success=done ends the stack with success (%s)" % rule.control
    for key, action in sorted(actions.items()):
        if action.isdigit() and index + int(action) >= adopt_index:
            return "%s=%s jumps over the adopt rule" % (key, action)
    return None


def is_adopt_rule(rule, match):
    return match in rule.module or any(match in arg for arg in rule.args)


def analyse_account(rules, conf):
    """(problems, info) for the effective account stack."""
    match = conf["adopt_match"]
    adopt = [i for i, r in enumerate(rules) if is_adopt_rule(r, match)]
    info = {"account_stack": [r.text() + "    # " + r.where() for r in rules]}
    if not adopt:
        return ["no adopt rule (%s) in the effective %s account stack"
                % (match, conf["pam_service"])], info
    problems = []
    if len(adopt) > 1:
        problems.append("%d adopt rules in the account stack (%s)"
                        % (len(adopt), ", ".join(rules[i].where() for i in adopt)))
    first = adopt[0]
    rule = rules[first]
    info["adopt_rule"] = rule.text() + "    # " + rule.where()
    if rule.optional:
        problems.append("the adopt rule is '-account' (silently skipped if the module is "
                        "missing): %s" % rule.where())
    if rule.depth:
        problems.append("the adopt rule is inside a substack: %s" % rule.where())
    allowed_after = [re.compile(p) for p in conf["allowed_after"]]
    for later in rules[adopt[-1] + 1:]:
        desc = "%s %s %s" % (later.control, later.module, " ".join(later.args))
        if not any(p.search(desc) for p in allowed_after):
            problems.append("the adopt rule is not last: %s follows it (%s)"
                            % (later.text(), later.where()))
    allowed_before = [re.compile(p) for p in conf["allowed_before"]]
    for index, earlier in enumerate(rules[:first]):
        why = short_circuit(earlier, index, first)
        if not why:
            continue
        desc = "%s %s %s" % (earlier.control, earlier.module, " ".join(earlier.args))
        if any(p.search(desc) for p in allowed_before):
            continue
        problems.append("short-circuit before the adopt rule: %s (%s): %s"
                        % (earlier.text(), earlier.where(), why))
    return problems, info


def pam_systemd_rules(service, pam_dir, read=None):
    rules, problems = effective_stack(service, "session", pam_dir, read=read)
    return [r for r in rules if r.module_name == "pam_systemd.so"], problems


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
    return (conf.get("nodename") or os.environ.get("SLURMD_NODENAME")
            or socket.gethostname().split(".")[0])


# ---------------------------------------------------------------------------
# the checks: each returns (status, message[, details])
# ---------------------------------------------------------------------------

def check_module_file(conf):
    path = conf["module_path"]
    try:
        st = os.lstat(path)
    except OSError as exc:
        return FAIL, "module file %s missing (%s)" % (path, exc.strerror)
    if not stat.S_ISREG(st.st_mode):
        return FAIL, "module file %s is not a regular file" % path
    if st.st_uid != 0:
        return FAIL, "module file %s is owned by uid %d, not root" % (path, st.st_uid)
    if st.st_mode & 0o022:
        return FAIL, "module file %s is group/world writable (%o)" % (path, st.st_mode & 0o777)
    want = conf.get("module_sha256")
    if want:
        have = sha256_file(path)
        if have != want:
            return FAIL, "module file %s changed (sha256 %s, expected %s)" % (path, have[:12],
                                                                              want[:12])
    pkg, want_pkg = conf.get("package_dir"), conf.get("package_digest")
    if pkg and want_pkg:
        if not os.path.isdir(pkg):
            return FAIL, "module package %s missing" % pkg
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
        return OK, "module file %s present, root-owned (no checksum configured)" % path
    return OK, "module file %s present, root-owned, checksum matches" % path


def check_account_stack(conf):
    rules, problems = effective_stack(conf["pam_service"], "account", conf["pam_dir"])
    found, info = analyse_account(rules, conf)
    problems = problems + found
    if problems:
        return FAIL, "; ".join(problems), info
    return OK, "adopt rule last in the %s account stack (%s), no short-circuit before it" % (
        conf["pam_service"], info["adopt_rule"].split("    # ")[1]), info


def check_pam_systemd(conf):
    rules, problems = pam_systemd_rules(conf["pam_service"], conf["pam_dir"])
    if rules:
        return FAIL, "pam_systemd reachable in the %s session stack (%s)" % (
            conf["pam_service"], ", ".join(r.where() for r in rules))
    if problems:
        return WARN, "session stack: %s" % "; ".join(problems)
    return OK, "pam_systemd not reachable from %s" % conf["pam_service"]


def check_logind(conf):
    want = conf.get("logind", "masked")
    if want == "any":
        return OK, "logind not managed"
    rc, out = run(["systemctl", "is-enabled", "systemd-logind.service"], conf["timeout"])
    if rc is None:
        return WARN, "cannot run systemctl: %s" % out.strip()
    state = out.strip().splitlines()[-1] if out.strip() else "unknown"
    rc2, active = run(["systemctl", "is-active", "systemd-logind.service"], conf["timeout"])
    active = (active or "").strip().splitlines()[-1] if (active or "").strip() else "unknown"
    if want == "masked":
        if state != "masked" or active == "active":
            return FAIL, "systemd-logind is %s/%s, expected masked/inactive" % (state, active)
        return OK, "systemd-logind masked and %s" % active
    return OK, "systemd-logind %s/%s" % (state, active)


def check_pam_python(conf):
    for path in conf["pam_python_paths"]:
        if os.path.exists(path):
            return OK, "pam_python present: %s" % path
    return FAIL, "pam_python.so not found (%s)" % ", ".join(conf["pam_python_paths"][:3])


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
    rc, out = run(["scontrol", "show", "config"], conf["timeout"])
    if rc == 0:
        value = parse_show(out).get("SlurmdSpoolDir")
        if value:
            return value.replace("%n", nodename(conf)).replace("%h", socket.gethostname())
    return "/var/spool/slurmd"


def check_stepd_sockets(conf):
    spool = _spool_dir(conf)
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


CHECKS = [
    ("module_file", check_module_file),
    ("account_stack", check_account_stack),
    ("pam_systemd", check_pam_systemd),
    ("logind", check_logind),
    ("pam_python", check_pam_python),
    ("slurm_config", check_slurm_config),
    ("slurmd", check_slurmd),
    ("stepd_sockets", check_stepd_sockets),
    ("explain", check_explain),
]
SLURM_CHECKS = ("slurm_config", "slurmd", "stepd_sockets", "explain")


def run_checks(conf, only=None, skip=()):
    results = []
    for name, func in CHECKS:
        if (only and name not in only) or name in skip:
            continue
        if name in SLURM_CHECKS and not conf.get("check_slurm", True):
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
        # run by slurmd (HealthCheckProgram): the periodic run stays cheap, and
        # slurmd itself is the caller (at its start it does not answer yet)
        conf["probe_user"] = None
        skip = {"slurmd"}
    else:
        skip = set()
    started = time.time()
    results = run_checks(conf, args.only, skip)
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
