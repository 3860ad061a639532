# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm_adopt_check.py explain: the installed module's real `explain`, run
with the options of the DEPLOYED adopt rule (read with the collection's PAM
parser), for each interface's line; and the drift check's `explain` probe,
which used to run with the module's defaults."""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(REPO, "roles", "adopt_drift", "files", "slurm_adopt_check.py")
MODULE_SRC = os.path.join(REPO, "roles", "adopt_module", "files")

spec = importlib.util.spec_from_file_location("slurm_adopt_check_explain_test", CHECK)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


@pytest.fixture
def node():
    """Below /run (root-owned up to /): the module, a slurm.conf with an empty
    spool dir (nobody has a job), a PAM tree whose sshd adopt line the test writes."""
    base = tempfile.mkdtemp(prefix="saf-drift-explain-", dir="/run")
    os.chmod(base, 0o755)
    mod = os.path.join(base, "mod")
    os.makedirs(mod)
    shutil.copy(os.path.join(MODULE_SRC, "pam_slurm_adopt.py"), mod)
    shutil.copytree(os.path.join(MODULE_SRC, "slurm_adopt"), os.path.join(mod, "slurm_adopt"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.makedirs(os.path.join(base, "spool"))
    with open(os.path.join(base, "slurm.conf"), "w") as handle:
        handle.write("ClusterName=x\nSlurmctldHost=localhost\nSlurmdSpoolDir=%s/spool\nNodeName=%s CPUs=1\n"
                     % (base, socket.gethostname().split(".")[0]))
    os.makedirs(os.path.join(base, "root", "etc", "pam.d"))
    conf = dict(check.DEFAULTS, root=os.path.join(base, "root"), module_path=os.path.join(mod, "pam_slurm_adopt.py"))

    def deploy(rule):
        with open(os.path.join(base, "root", "etc", "pam.d", "sshd"), "w") as handle:
            handle.write("account required pam_unix.so\naccount %s\n" % rule)
    yield {"base": base, "mod": mod, "conf": conf, "deploy": deploy,
           "slurm_conf": os.path.join(base, "slurm.conf"), "script": conf["module_path"]}
    shutil.rmtree(base)


def test_pam_python_rule_options_are_used(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", node["slurm_conf"])
    node["deploy"]("required pam_python.so %s" % node["script"])
    res = check.explain(node["conf"], "nobody")
    assert res["error"] is None and res["decision"] == "PAM_PERM_DENIED" and res["options"] == []
    assert res["interface"] == "pam_python" and "no active jobs" in res["user_message"]
    node["deploy"]("required pam_python.so %s action_no_jobs=ignore" % node["script"])
    res = check.explain(node["conf"], "nobody")
    assert res["decision"] == "PAM_IGNORE" and res["options"] == ["action_no_jobs=ignore"]
    assert res["why"] == "uid %d owns no jobs but action_no_jobs=ignore" % 65534


def test_pam_exec_rule_options_and_environment_are_used(node, monkeypatch):
    """The module reads SLURM_CONF from a pam_exec line's /usr/bin/env words:
    so does its explanation."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    rule = ("required pam_exec.so stdout quiet /usr/bin/env SLURM_CONF=%s /usr/bin/python3 -I -S %s pam-exec "
            "action_no_jobs=ignore log_level=debug")
    node["deploy"](rule % (node["slurm_conf"], node["script"]))
    res = check.explain(node["conf"], "nobody")
    assert res["interface"] == "pam_exec" and res["script"] == node["script"]
    assert res["options"] == ["action_no_jobs=ignore", "log_level=debug"]
    assert res["decision"] == "PAM_IGNORE" and "reading %s" % node["slurm_conf"] in "\n".join(res["transcript"])
    node["deploy"](rule % ("/nonexistent/slurm.conf", node["script"]))
    res = check.explain(node["conf"], "nobody")
    assert "/nonexistent/slurm.conf" in "\n".join(res["transcript"]), res["transcript"]


def test_other_modules_pass_their_arguments_as_options(node):
    node["deploy"]("required pam_slurm_adopt.so action_unknown=deny nodename=x")
    _problems, _info, entry = check.analyse_account(node["conf"])
    how = check.deployed_invocation(node["conf"], entry)
    assert how == {"interface": "pam_slurm_adopt", "script": node["script"],
                   "options": ["action_unknown=deny", "nodename=x"], "env": {}}


def test_no_adopt_rule_and_an_unsafe_module_are_errors(node, tmp_path):
    node["deploy"]("required pam_permit.so")
    assert check.explain(node["conf"], "nobody")["error"] == "no adopt rule in the effective sshd account stack"
    unsafe = tmp_path / "pam_slurm_adopt.py"            # below /tmp: anyone could have replaced it
    shutil.copy(node["script"], str(unsafe))
    node["deploy"]("required pam_python.so %s" % unsafe)
    res = check.explain(node["conf"], "nobody")
    assert res["error"].startswith("module %s: " % unsafe) and res["transcript"] == []


def test_the_drift_checks_explain_probe_uses_the_deployed_options(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", node["slurm_conf"])
    node["deploy"]("required pam_python.so %s action_no_jobs=ignore" % node["script"])
    conf = dict(node["conf"], probe_user="nobody")
    status, message = check.check_explain(conf)
    assert status == check.OK and "PAM_IGNORE" in message, message
    node["deploy"]("required pam_python.so %s" % node["script"])
    status, message = check.check_explain(conf)
    assert status == check.OK and "PAM_PERM_DENIED" in message, message


def test_command_line_json(node):
    node["deploy"]("required pam_python.so %s action_no_jobs=ignore" % node["script"])
    path = os.path.join(node["base"], "check.json")
    with open(path, "w") as handle:
        json.dump({k: node["conf"][k] for k in ("root", "module_path")}, handle)
    env = dict(os.environ, SLURM_CONF=node["slurm_conf"])
    proc = subprocess.run([sys.executable, CHECK, "explain", "nobody", "--config", path, "--json"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(proc.stdout)
    assert res["decision"] == "PAM_IGNORE" and res["user"] == "nobody"
