# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health checks of playbooks/healthcheck.yml as a testinfra suite, for a
site to run against its own compute nodes:

    pytest -p no:cacheprovider --hosts=ssh://root@node1,ssh://root@node2 \\
        ansible_collections/hpc/slurm_adopt/tests/testinfra

(any testinfra backend works: ssh://, paramiko://, ansible://, podman://;
add --sudo for a non-root user).  Settings come from the environment:

    SLURM_ADOPT_PROBE_USER   real user without a job for the live `explain` (nobody)
    SLURM_ADOPT_LOGIND       masked (default) | any   (adopt_logind_mask: false)
    SLURM_ADOPT_PAM_SERVICE  sshd (default)
    SLURM_ADOPT_MODULE_DIR   /usr/lib/slurm-adopt (default)

The expected module checksums are those of the collection this file is part
of (roles/adopt_module/files).  The PAM files are read from the node and
parsed with the collection's one PAM parser (plugins/module_utils/pam_stack.py,
through the drift check's analysis).  Whether the module loads and decides is
asked of the node's real libpam (plugins/module_utils/_pam_eval.py, copied to
a scratch directory on the node for the test and removed afterwards; it runs
in a private mount namespace and changes no PAM service of the node).
"""

import base64
import hashlib
import importlib.util
import json
import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(COLLECTION, "roles", "adopt_module", "files")
PAM_EVAL = os.path.join(COLLECTION, "plugins", "module_utils", "_pam_eval.py")
MODULE_DIR = os.environ.get("SLURM_ADOPT_MODULE_DIR", "/usr/lib/slurm-adopt")
MODULE = MODULE_DIR + "/pam_slurm_adopt.py"
SERVICE = os.environ.get("SLURM_ADOPT_PAM_SERVICE", "sshd")
PROBE_USER = os.environ.get("SLURM_ADOPT_PROBE_USER", "nobody")
LOGIND = os.environ.get("SLURM_ADOPT_LOGIND", "masked")
NOJOB = "slurm-adopt-nojob"     # exists only inside the PAM probe's namespace
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


def _bracket(arg):
    return "[%s]" % arg.replace("]", "\\]") if re.search(r"\s", arg) else arg


def test_pam_python_loads(host, account):
    """The live adopt rule alone, with action_generic_failure=allow, for an
    ordinary user without a job, through the node's real libpam: the module
    must load and deny with its own message.  A broken install answers
    PAM_SUCCESS here (the failure action allows); a missing pam_python.so or
    script answers without the message.  (root cannot tell: the module ignores
    root whether or not it loads.)"""
    _problems, info, entry = account
    assert entry is not None, "no adopt rule in the %s account stack" % SERVICE
    rule = "account required %s %s action_generic_failure=allow\n" % (
        info["adopt_module"], " ".join(_bracket(a) for a in info["adopt_args"]
                                       if not a.lower().startswith("action_generic_failure=")))
    with open(PAM_EVAL, "rb") as handle:
        evaluator = base64.b64encode(handle.read()).decode()
    spec = {"queries": [{"service": SERVICE, "user": NOJOB, "op": "account"}],
            "probe_users": [{"name": NOJOB}], "timeout": 20.0}
    with host.sudo():
        scratch = host.check_output("mktemp -d /tmp/slurm-adopt-testinfra.XXXXXX")
        try:
            spec["tree"] = scratch + "/tree"
            script = "; ".join([
                "set -e", "cd %s" % scratch, "mkdir -p tree/etc/pam.d",
                "echo %s | base64 -d > pam_eval.py" % evaluator,
                "echo %s | base64 -d > tree/etc/pam.d/%s" % (base64.b64encode(rule.encode()).decode(), SERVICE),
                "echo %s | base64 -d > spec.json" % base64.b64encode(json.dumps(spec).encode()).decode(),
                "python3 pam_eval.py eval spec.json"])
            res = host.run("sh -c %s" % "'" + script.replace("'", "'\\''") + "'")
        finally:
            host.run("rm -rf %s" % scratch)
    assert res.rc == 0, "the PAM probe did not run: %s %s" % (res.stdout[-500:], res.stderr[-500:])
    result = json.loads(res.stdout)["results"][0]
    said = [m["text"] for m in result.get("messages", [])] + result.get("log", [])
    assert result["status"] == "ok" and result["rc_name"] != "PAM_SUCCESS", \
        "%s: %s for a user without a job (rule: %s)" % (SERVICE, result["rc_name"], rule.strip())
    assert any("no active jobs" in line for line in said), \
        "%s: %s without the module's message: the module did not decide (%s)" % (
            SERVICE, result["rc_name"], " | ".join(said))


def test_live_explain_probe(host):
    with host.sudo():
        res = host.run("python3 %s explain %s" % (MODULE, PROBE_USER))
    assert res.rc in (0, 1), res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("decision:") for ln in lines), res.stdout
    errors = [ln for ln in lines if ln.strip().startswith("[error]")
              or "applying action_generic_failure" in ln]
    assert errors == [], "\n".join(errors)
