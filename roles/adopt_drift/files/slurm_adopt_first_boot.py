# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""First-boot checks of a node booted from an image (image mode).

Standard library only, Python 3.6+.  Loaded by slurm_adopt_check.py (next to
it) when its configuration has a ``first_boot`` section, which role
adopt_drift writes in image mode (slurm_adopt_image_root).  An image is built
where nothing runs: the rollout could not ask the running Slurm
configuration (``scontrol show config``) nor log anyone in.  Those checks
move here, to the node's own drift check, at boot:

* ``logins``: the node's live PAM stack, asked of the node's real libpam (the
  collection's evaluator, a private mount namespace): root, the users in
  ``first_boot.allow`` and a member of ``first_boot.admin_group`` get in; an
  ordinary user without a job (``first_boot.nojob_user``, who exists only in
  the namespace) is denied.  pam_python cannot be loaded into the
  evaluator's own Python, so the copy of the stack it runs calls the same
  module through pam_exec (the same decision for users without a job).
* ``slurm_config``: as on every node, but a failure to ask (no controller
  yet) is red, not a warning, until it has passed once on this boot.

Until every check of ``first_boot.checks`` has passed in one run, each of
them that is not ok is red (the HealthCheckProgram hook keeps the node
drained).  The run where they all pass writes ``first_boot.marker`` (below
/run: a tmpfs, gone at the next boot, which is a first boot again for a
stateless node).  From then on ``slurm_config`` is judged as on any node, and
the HealthCheckProgram runs (``drain``) no longer repeat the login check;
``check`` runs always do.
"""

import grp
import json
import os
import pwd
import re
import shutil
import tempfile
import time

OK, WARN, FAIL = "ok", "warn", "fail"
DEFAULTS = {
    "marker": "/run/slurm-adopt/first-boot.json",
    "checks": ["slurm_config", "logins"],
    "allow": ["root"],
    "admin_group": None,
    "nojob_user": "slurm-adopt-nojob",
    "services": ["sshd"],
    "rhost": "192.0.2.10",
    "python": "/usr/bin/python3",
    "timeout": 10,
}
PAM_PATHS = ("/etc/pam.d", "/usr/lib/pam.d", "/etc/security", "/etc/authselect")
PAM_PYTHON_RULE = re.compile(r"pam_python\.so(\s+)(/\S*pam_slurm_adopt\.py)")


def settings(conf):
    """The first_boot section with its defaults, or None (not an image)."""
    section = conf.get("first_boot")
    if not section:
        return None
    out = dict(DEFAULTS)
    out.update(section)
    return out


def read_marker(fb):
    try:
        with open(fb["marker"]) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def write_marker(fb, results):
    directory = os.path.dirname(fb["marker"])
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    data = {"passed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "checks": sorted(r["check"] for r in results if r["check"] in fb["checks"])}
    tmp = fb["marker"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.write("\n")
    os.rename(tmp, fb["marker"])


def admin_member(group):
    """A user of ``group`` on this node (a member, or a user whose primary
    group it is), or None."""
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return None
    if entry.gr_mem:
        return entry.gr_mem[0]
    for user in pwd.getpwall():
        if user.pw_gid == entry.gr_gid:
            return user.pw_name
    return None


def _stage(scratch, python):
    """Copy the live PAM tree below ``scratch``; the adopt rule through
    pam_python becomes the same module through pam_exec."""
    for path in PAM_PATHS:
        if os.path.isdir(path):
            shutil.copytree(path, scratch + path, symlinks=True)
    for top, _dirs, files in os.walk(scratch):
        for name in files:
            full = os.path.join(top, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            with open(full, "rb") as handle:
                text = handle.read().decode("utf-8", "surrogateescape")
            new = PAM_PYTHON_RULE.sub(lambda m: "pam_exec.so stdout quiet %s %s pam-exec" % (python, m.group(2)),
                                      text)
            if new != text:
                with open(full, "wb") as handle:
                    handle.write(new.encode("utf-8", "surrogateescape"))


def check_logins(conf, util):
    """Root, the configured users and an admin get in through the live
    stack; a user without a job does not."""
    fb = settings(conf)
    if fb is None:
        return OK, "no first-boot login check configured"
    allow = list(fb["allow"])
    if fb.get("admin_group"):
        member = admin_member(fb["admin_group"])
        if member is None:
            return FAIL, "admin group %s has no member on this node: no administrator could log in" % (
                fb["admin_group"])
        allow.append(member)
    allow = sorted(set(allow))
    nojob = fb["nojob_user"]
    queries = [{"service": service, "user": user, "op": "account", "rhost": fb["rhost"]}
               for service in fb["services"] for user in allow + [nojob]]
    scratch = tempfile.mkdtemp(prefix="slurm-adopt-logins.")
    try:
        _stage(scratch, fb["python"])
        out = util("_pam_eval").evaluate(queries, tree=scratch, probe_users=[{"name": nojob}],
                                         timeout=float(fb["timeout"]))
    except Exception as exc:  # pylint: disable=broad-except
        return FAIL, "the login check could not run: %s: %s" % (type(exc).__name__, exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    failures = util("_pam_eval").expectation_failures(out["results"], allow=allow, deny=[nojob])
    if failures:
        return FAIL, "live %s stack: %s" % ("/".join(fb["services"]), "; ".join(failures))
    return OK, "live %s stack (%s): %s get in, %s (no job) is denied" % (
        "/".join(fb["services"]), out.get("libpam", "libpam"), ", ".join(allow), nojob)


def skip_in_drain(conf):
    """The checks a HealthCheckProgram run leaves out: the login check once
    it has passed on this boot."""
    fb = settings(conf)
    if fb is None:
        return set()
    if read_marker(fb) is not None:
        return {"logins"}
    return set()


def settle(conf, results):
    """Until the first-boot checks have all passed once on this boot, any of
    them that is not ok is red; the run where they all pass records it."""
    fb = settings(conf)
    if fb is None:
        return results
    marker = read_marker(fb)
    if marker is not None:
        return results
    mine = [r for r in results if r["check"] in fb["checks"]]
    ran = set(r["check"] for r in mine)
    if mine and all(r["status"] == OK for r in mine) and ran == set(fb["checks"]):
        write_marker(fb, mine)
        return results
    for res in mine:
        if res["status"] != OK:
            res["status"] = FAIL
            res["message"] = "first boot, not passed yet: %s" % res["message"]
    return results
