# SPDX-License-Identifier: GPL-3.0-or-later
"""The health check's one step on a node (roles/slurm_adopt/files/health_node.py):
the installed drift check is used only when each of its files is the
collection's; it runs with the given configuration; the PAM tree copy turns
the adopt module's pam_python rules into pam_exec.  Run as the playbook runs
it (python3 -B -I -c <file> <JSON>), with the collection's own check as the
"installed" one, and its helpers imported directly."""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "roles", "slurm_adopt", "files", "health_node.py")
CHECK_DIR = os.path.join(REPO, "roles", "adopt_drift", "files")


def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def step(install_dir, files, config=None):
    given = {"install_dir": install_dir, "files": files, "label": "cn01", "nojob": "nobody",
             "pam_python": "/usr/bin/python3",
             "config": config or {"module_path": "/nonexistent/pam_slurm_adopt.py", "logind": "any",
                                  "pam_systemd": "any", "slurm_flags": {}}}
    with open(SCRIPT) as handle:
        code = handle.read()
    proc = subprocess.run([sys.executable, "-B", "-I", "-c", code, json.dumps(given)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_installed_check_runs_when_it_is_the_collections(tmp_path):
    install = tmp_path / "lib"
    shutil.copytree(CHECK_DIR, str(install))
    for name in ("_pam_stack", "_pam_eval", "_pam_guard", "_pam_health"):
        shutil.copy(os.path.join(REPO, "plugins", "module_utils", name + ".py"),
                    str(install / ("slurm_adopt%s.py" % name)))
    files = {n: sha(str(install / n)) for n in ("slurm_adopt_check.py", "slurm_adopt_pam_stack.py")}
    out = step(str(install), files)
    try:
        assert "fallback" not in out, out
        checks = {c["check"]: c["status"] for c in out["report"]["checks"]}
        assert checks["module_file"] == "fail" and checks["logind"] == "ok", checks
        assert out["report"]["lines"][0].startswith("cn01"), out["report"]["lines"]
        assert out["su"] is None          # no adopt rule on this machine's sshd stack
        assert out["tree"] == os.path.join(out["scratch"], "tree") and os.path.isdir(out["tree"] + "/etc/pam.d")
        assert sorted(os.listdir(out["scratch"])) == ["tree"]     # the configuration is gone
        assert out["scratch"].endswith(".slurm-adopt-health")
        assert not (install / "__pycache__").exists()            # -B: no byte code next to the check
    finally:
        shutil.rmtree(out.get("scratch", str(tmp_path / "none")), ignore_errors=True)


def test_an_edited_installed_check_is_not_used(tmp_path):
    install = tmp_path / "lib"
    shutil.copytree(CHECK_DIR, str(install))
    files = {"slurm_adopt_check.py": sha(str(install / "slurm_adopt_check.py"))}
    with open(str(install / "slurm_adopt_check.py"), "a") as handle:
        handle.write("# edited on the node\n")
    out = step(str(install), files)
    assert out == {"fallback": "%s/slurm_adopt_check.py differs from the collection's" % install}
    out = step(str(tmp_path / "missing"), files)
    assert "fallback" in out and "No such file" in out["fallback"], out


def test_the_tree_copy_turns_pam_python_into_pam_exec(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("health_node", SCRIPT)
    node = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(node)
    live = tmp_path / "live" / "etc" / "pam.d"
    live.mkdir(parents=True)
    (live / "sshd").write_text("account sufficient pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py x=1\n"
                               "account required pam_python.so /opt/other.py\n")
    monkeypatch.setattr(node, "PAM_DIRS", (str(live),))
    tree = tmp_path / "tree"
    node.copy_pam_tree(str(tree), "/usr/bin/python3")
    copied = (tree / str(live).lstrip("/") / "sshd").read_text()
    assert copied == ("account sufficient pam_exec.so stdout quiet /usr/bin/python3 "
                      "/usr/lib/slurm-adopt/pam_slurm_adopt.py pam-exec x=1\n"
                      "account required pam_python.so /opt/other.py\n"), copied
    assert (live / "sshd").read_text().startswith("account sufficient pam_python.so")   # the live file untouched
