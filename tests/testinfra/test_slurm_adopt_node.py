# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health checks of playbooks/healthcheck.yml as a testinfra suite, for a
site to run against its own compute nodes:

    pytest -p no:cacheprovider --hosts=ssh://root@node1,ssh://root@node2 \\
        ansible_collections/hpc/slurm_adopt/tests/testinfra

(any testinfra backend works: ssh://, paramiko://, ansible://, podman://;
add --sudo for a non-root user).  Settings come from the environment:

    SLURM_ADOPT_PROBE_USER   user without a job for the live `explain` probe (nobody)
    SLURM_ADOPT_LOGIND       masked (default) | any
    SLURM_ADOPT_PAM_SERVICE  sshd (default)
    SLURM_ADOPT_MODULE_DIR   /usr/lib/slurm-adopt (default)

The expected module checksums are those of the collection this file is part
of (roles/adopt_module/files).  The PAM stack is read from the node and
parsed here, with the parser of the node-side drift check
(roles/adopt_drift/files/slurm_adopt_check.py).
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
    out = []
    base = os.path.join(SRC, "slurm_adopt")
    for name in sorted(os.listdir(base)):
        if name.endswith(".py"):
            out.append(name)
    return out


def _reader(host):
    def read(path):
        f = host.file(path)
        if not f.exists:
            raise IOError("no such file: %s" % path)
        # content_string drops a trailing newline; the parser does not care
        return f.content_string
    return read


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


def test_adopt_rule_last_and_nothing_short_circuits(host):
    with host.sudo():
        rules, problems = CHECK.effective_stack(SERVICE, "account", read=_reader(host))
        conf = dict(CHECK.DEFAULTS, pam_service=SERVICE)
        found, _info = CHECK.analyse_account(rules, conf)
    assert problems + found == [], "\n".join(problems + found)


def test_pam_systemd_unreachable(host):
    with host.sudo():
        rules, _problems = CHECK.pam_systemd_rules(SERVICE, "/etc/pam.d", read=_reader(host))
    assert rules == [], "pam_systemd reachable: %s" % ", ".join(r.where() for r in rules)


def test_logind_as_configured(host):
    if LOGIND == "any":
        pytest.skip("SLURM_ADOPT_LOGIND=any")
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


def test_pam_python_loads(host):
    svc = "slurm-adopt-testinfra"
    with host.sudo():
        res = host.run(
            "printf 'account required pam_python.so %s service=%s\\naccount required pam_permit.so\\n' "
            "> /etc/pam.d/%s && pamtester %s root acct_mgmt; rc=$?; rm -f /etc/pam.d/%s; exit $rc"
            % (MODULE, svc, svc, svc, svc))
    assert res.rc == 0, "pamtester: %s %s" % (res.stdout, res.stderr)


def test_live_explain_probe(host):
    with host.sudo():
        res = host.run("python3 %s explain %s" % (MODULE, PROBE_USER))
    assert res.rc in (0, 1), res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("decision:") for ln in lines), res.stdout
    errors = [ln for ln in lines if ln.strip().startswith("[error]")
              or "applying action_generic_failure" in ln]
    assert errors == [], "\n".join(errors)
