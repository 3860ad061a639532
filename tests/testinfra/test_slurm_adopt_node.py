# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The health checks of playbooks/healthcheck.yml as a testinfra suite, for a
site to run against its own compute nodes:

    pytest -p no:cacheprovider --hosts=ssh://root@node1,ssh://root@node2 \\
        ansible_collections/hpc/slurm_adopt/tests/testinfra

(any testinfra backend works: ssh://, paramiko://, ansible://, podman://;
add --sudo for a non-root user).  Settings come from the environment:

    SLURM_ADOPT_PROBE_USER   real user without a job for `explain` and the PAM check (nobody)
    SLURM_ADOPT_LOGIND       masked (default) | any   (adopt_logind_mask: false)
    SLURM_ADOPT_PAM_SERVICE  sshd (default)
    SLURM_ADOPT_MODULE_DIR   /usr/lib/slurm-adopt (default)

The expected module checksums are those of the collection this file is part
of (roles/adopt_module/files).  The PAM files are read from the node and
parsed with the collection's one PAM parser (plugins/module_utils/_pam_stack.py,
through the drift check's analysis).  Whether the module loads and decides is
asked of the node's libpam through su, in a private mount namespace with a
scratch /etc/pam.d (a temporary directory, removed afterwards): no PAM
service of the node is added or changed.
"""

import hashlib
import importlib.util
import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(COLLECTION, "roles", "adopt_module", "files")
MODULE_DIR = os.environ.get("SLURM_ADOPT_MODULE_DIR", "/usr/lib/slurm-adopt")
MODULE = MODULE_DIR + "/pam_slurm_adopt.py"
SERVICE = os.environ.get("SLURM_ADOPT_PAM_SERVICE", "sshd")
PROBE_USER = os.environ.get("SLURM_ADOPT_PROBE_USER", "nobody")
LOGIND = os.environ.get("SLURM_ADOPT_LOGIND", "masked")
FLAGS = {"PrologFlags": ["contain"], "ProctrackType": ["proctrack/cgroup"],
         "TaskPlugin": ["task/cgroup"]}


def _load_checker():
    path = os.path.join(COLLECTION, "roles", "adopt_drift", "files", "slurm_adopt_check.py")
    spec = importlib.util.spec_from_file_location("slurm_adopt_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHECK = _load_checker()


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _package_files():
    return sorted(n for n in os.listdir(os.path.join(SRC, "slurm_adopt")) if n.endswith(".py"))


class RemoteSource(CHECK.pam_stack().FileSource):
    """The PAM files of the host under test, for the collection's parser
    (symlinks followed on the host, as libpam follows them)."""

    def __init__(self, host):
        CHECK.pam_stack().FileSource.__init__(self, "/", "/etc/pam.d", "/usr/lib/pam.d")
        self.host = host

    def exists(self, path):
        return self.host.file(path).is_file

    def locate(self, name):
        for cand in self.candidates(name):
            if self.exists(cand):
                return cand
        return None

    def read(self, path):
        return self.host.file(path).content_string + "\n"


def _conf():
    return dict(CHECK.DEFAULTS, pam_service=SERVICE)


@pytest.fixture(scope="module")
def account(host):
    with host.sudo():
        return CHECK.analyse_account(_conf(), source=RemoteSource(host))


@pytest.fixture(scope="module")
def slurm_config(host):
    with host.sudo():
        res = host.run("scontrol show config")
    assert res.rc == 0, "scontrol show config failed: %s" % res.stderr
    return CHECK.parse_show(res.stdout)


def test_module_file_present_root_owned_and_unchanged(host):
    f = host.file(MODULE)
    assert f.exists and f.is_file, "%s missing" % MODULE
    assert f.user == "root" and f.group == "root"
    assert f.mode & 0o022 == 0, "%s is group/world writable: %o" % (MODULE, f.mode)
    assert f.sha256sum == _sha256(os.path.join(SRC, "pam_slurm_adopt.py")), \
        "%s differs from the collection's" % MODULE
    for name in _package_files():
        remote = host.file("%s/slurm_adopt/%s" % (MODULE_DIR, name))
        assert remote.exists and remote.user == "root" and remote.mode & 0o022 == 0, name
        assert remote.sha256sum == _sha256(os.path.join(SRC, "slurm_adopt", name)), \
            "%s/slurm_adopt/%s differs from the collection's" % (MODULE_DIR, name)


def test_adopt_rule_last_and_nothing_short_circuits(account):
    problems, _info, _entry = account
    assert problems == [], "\n".join(problems)


def test_pam_systemd_unreachable(host):
    with host.sudo():
        rules, _problems = CHECK.pam_systemd_rules(_conf(), source=RemoteSource(host))
    assert rules == [], "pam_systemd reachable: %s" % ", ".join(CHECK._where(r) for r in rules)


def test_logind_as_configured(host):
    if LOGIND == "any":
        pytest.skip("SLURM_ADOPT_LOGIND=any (adopt_logind_mask: false): logind is not managed")
    enabled = host.run("systemctl is-enabled systemd-logind.service").stdout.strip()
    active = host.run("systemctl is-active systemd-logind.service").stdout.strip()
    assert enabled == "masked" and active != "active", "logind is %s/%s" % (enabled, active)


def test_running_slurm_config_has_the_flags(slurm_config):
    for key, words in FLAGS.items():
        have = [w.lower() for w in re.split(r"[,\s]+", slurm_config.get(key, "")) if w]
        for word in words:
            assert word in have, "%s=%s lacks %s" % (key, slurm_config.get(key), word)


def test_slurmd_answers(host):
    with host.sudo():
        res = host.run("scontrol show slurmd")
    assert res.rc == 0, res.stderr


def test_stepd_sockets_accessible(host, slurm_config):
    spool = slurm_config.get("SlurmdSpoolDir", "/var/spool/slurmd")
    spool = spool.replace("%n", host.check_output("hostname -s")).replace(
        "%h", host.check_output("hostname"))
    with host.sudo():
        assert host.file(spool).is_directory, spool
        res = host.run("for s in $(find %s -maxdepth 1 -type s); do test -r $s -a -w $s || echo $s; done"
                       % spool)
    assert res.rc == 0 and res.stdout.strip() == "", "not accessible: %s" % res.stdout


def test_pam_python_loads(host, account):
    """The live adopt rule alone, required, with action_generic_failure=allow,
    for a real user without a job (SLURM_ADOPT_PROBE_USER), through a C PAM
    client (su) in a private mount namespace whose /etc/pam.d holds only
    that rule: the module must load (pam_python included) and deny with its
    own message.  A broken install lets the user in (the failure action
    allows); a missing pam_python.so or script refuses without the message.
    (root cannot tell: the module ignores root whether or not it loads.)"""
    _problems, info, entry = account
    assert entry is not None, "no adopt rule in the %s account stack" % SERVICE
    rule = " ".join([info["adopt_module"]] + [a for a in info["adopt_args"] if not re.match(
        r"(?i)(action_generic_failure|service)=", a)] + ["service=su", "action_generic_failure=allow"])
    script = "; ".join([
        "d=$(mktemp -d /tmp/slurm-adopt-testinfra.XXXXXX)",
        "printf 'auth sufficient pam_rootok.so\\naccount required %s\\n"
        "password required pam_deny.so\\nsession required pam_permit.so\\n' > $d/su" % rule,
        "unshare --mount --propagation private sh -c 'mount --bind \"$1\" /etc/pam.d && "
        "exec su -s /bin/sh -c true \"$2\"' sh $d %s 2>&1" % PROBE_USER,
        "echo exit=$?", "rm -rf $d"])
    with host.sudo():
        res = host.run(script)
    lines = res.stdout.splitlines()
    assert "exit=0" not in lines, "%s (no job) was let in by the adopt rule alone: %s" % (PROBE_USER, res.stdout)
    assert any("no active jobs" in ln for ln in lines), \
        "refused without the module's message: the module did not load or decide (%s)" % " | ".join(lines)


def test_live_explain_probe(host):
    with host.sudo():
        res = host.run("python3 %s explain %s" % (MODULE, PROBE_USER))
    assert res.rc in (0, 1), res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("decision:") for ln in lines), res.stdout
    errors = [ln for ln in lines if ln.strip().startswith("[error]")
              or "applying action_generic_failure" in ln]
    assert errors == [], "\n".join(errors)
