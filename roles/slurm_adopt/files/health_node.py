# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One step of playbooks/healthcheck.yml on a compute node (entry point
health of role slurm_adopt), run as `python3 -B -I -c <this file> <JSON>`:
nothing is copied to the node and nothing is installed.

1. The drift check that site.yml installed is used only when every one of
   its files has the sha256 of the collection's own copy (given in the
   input): otherwise this prints {"fallback": why} and the play copies the
   collection's check fresh, as before.
2. It runs with a configuration made from the role's variables (the input's
   "config", written into a scratch directory of its own), exactly as the
   scratch copy runs: `check --json --label <host>`.
3. A copy of the live PAM tree for the PAM probe (pam_python rules of the
   adopt module turned into pam_exec, which decides the same for users
   without a job): left in <scratch>/tree for hpc.slurm_adopt.pam_probe,
   which removes the scratch directory afterwards.
4. The adopt rule alone, through su in a private mount namespace, with
   action_generic_failure=allow, for a user without a job: the module must
   load and deny with its own message.

Prints one JSON object: user (who Ansible connects as, "" if unknown),
report (the drift check's), su (su's output lines, or null without an
adopt rule), scratch, tree.  Writes nothing outside the scratch directory;
no byte code (-B).
"""

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

PAM_DIRS = ("/etc/pam.d", "/usr/lib/pam.d", "/etc/security", "/etc/authselect")
PAM_PYTHON_RULE = re.compile(r"pam_python\.so(\s+)(/\S*pam_slurm_adopt\.py)")
DROPPED_ARGS = re.compile(r"(?i)(action_generic_failure|service)=")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def connecting_user(environ):
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
    return ""


def mismatched(install_dir, files):
    """The installed check's files that are not the collection's."""
    out = []
    for name, want in sorted(files.items()):
        path = os.path.join(install_dir, name)
        try:
            have = sha256(path)
        except (IOError, OSError) as exc:
            out.append("%s: %s" % (path, exc.strerror or exc))
            continue
        if have != want:
            out.append("%s differs from the collection's" % path)
    return out


def run_check(install_dir, config_path, label):
    """The installed check's `check --json --label LABEL`, in this process
    (it loads the collection's PAM code next to it by path)."""
    spec = importlib.util.spec_from_file_location("slurm_adopt_check",
                                                  os.path.join(install_dir, "slurm_adopt_check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check.main(["check", "--config", config_path, "--json", "--label", label])
    return json.loads(out.getvalue())


def copy_pam_tree(tree, python):
    """The live PAM tree below tree, adopt rules of pam_python as pam_exec."""
    for path in PAM_DIRS:
        if os.path.exists(path):
            parent = tree + os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            subprocess.run(["cp", "-a", path, parent + "/"], check=True)
    os.makedirs(os.path.join(tree, "etc", "security"), exist_ok=True)
    for root, _dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            try:
                with open(path) as handle:
                    text = handle.read()
            except (UnicodeDecodeError, IOError, OSError):
                continue
            new = PAM_PYTHON_RULE.sub(lambda m: "pam_exec.so stdout quiet %s %s pam-exec" % (python, m.group(2)),
                                      text)
            if new != text:
                with open(path, "w") as handle:
                    handle.write(new)


def module_decides(scratch, report, nojob):
    """su's output for a user without a job, the live adopt rule alone."""
    stack = [c for c in report.get("checks", []) if c.get("check") == "account_stack"]
    details = (stack[0].get("details") if stack else None) or {}
    if not details.get("adopt_module"):
        return None
    args = [a for a in details.get("adopt_args") or [] if not DROPPED_ARGS.match(a)]
    rule = " ".join([details["adopt_module"]] + args + ["service=su", "action_generic_failure=allow"])
    pamd = os.path.join(scratch, "su", "pam.d")
    os.makedirs(pamd)
    with open(os.path.join(pamd, "su"), "w") as handle:
        handle.write("auth sufficient pam_rootok.so\naccount required %s\npassword required pam_deny.so\n"
                     "session required pam_permit.so\n" % rule)
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount --bind "$1" /etc/pam.d && exec su -s /bin/sh -c true "$2"', "sh", pamd, nojob],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                          timeout=60)
    return proc.stdout.splitlines() + ["exit=%d" % proc.returncode]


def main(argv):
    given = json.loads(argv[1])
    install_dir = given["install_dir"]
    wrong = mismatched(install_dir, given["files"])
    if wrong:
        print(json.dumps({"fallback": "; ".join(wrong)}))
        return 0
    scratch = tempfile.mkdtemp(suffix=".slurm-adopt-health")
    try:
        config_path = os.path.join(scratch, "check.json")
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(given["config"], handle, indent=2, sort_keys=True)
        report = run_check(install_dir, config_path, given["label"])
        os.unlink(config_path)
        copy_pam_tree(os.path.join(scratch, "tree"), given["pam_python"])
        said = module_decides(scratch, report, given["nojob"])
        shutil.rmtree(os.path.join(scratch, "su"), ignore_errors=True)
    except Exception as exc:  # pylint: disable=broad-except
        shutil.rmtree(scratch, ignore_errors=True)
        print(json.dumps({"fallback": "the installed check did not run here: %s: %s" % (type(exc).__name__, exc)}))
        return 0
    print(json.dumps({"user": connecting_user(os.environ), "report": report, "su": said,
                      "scratch": scratch, "tree": os.path.join(scratch, "tree")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
