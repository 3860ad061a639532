"""The adopt_slurm_conf role, run by ansible-playbook against this machine
(connection local) on copies of the fixtures: check mode, edit, idempotence,
configless delegation, and verification against the running lab controller
(read-only).  The Slurm daemons are never touched (manage_daemons: false)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "fixtures", "slurm_conf")
BIN = os.path.dirname(sys.executable)
PLAYBOOK = os.path.join(BIN, "ansible-playbook")
LAB_CONF = "/var/lib/slurm-adopt-lab/host/etc/slurm.conf"

pytestmark = pytest.mark.skipif(not os.path.exists(PLAYBOOK), reason="no ansible-playbook next to this python")


def play(tmp_path, variables, *extra, hosts="node1", environment=None):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[all]\nnode1 ansible_connection=local ansible_python_interpreter=%s\n"
                         "ctl1 ansible_connection=local ansible_python_interpreter=%s\n"
                         % (sys.executable, sys.executable))
    book = tmp_path / "play.yml"
    book.write_text(json.dumps([{
        "name": "adopt_slurm_conf test", "hosts": hosts, "gather_facts": False,
        "environment": environment or {},
        "roles": [{"role": "hpc.slurm_adopt.adopt_slurm_conf"}],
    }]))
    varfile = tmp_path / "vars.json"
    base = {"adopt_slurm_conf_manage_daemons": False, "adopt_slurm_conf_verify": False,
            "adopt_slurm_conf_configless_env_files": [str(tmp_path / "default-slurmd")],
            "adopt_slurm_conf_configless_caches": [str(tmp_path / "cache" / "slurm.conf")],
            "adopt_slurm_conf_slurmd_service": "hpc-slurm-adopt-test-none"}
    base.update(variables)
    varfile.write_text(json.dumps(base))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_STDOUT_CALLBACK="default",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([PLAYBOOK, "-i", str(inventory), str(book), "-e", "@" + str(varfile)] + list(extra),
                          capture_output=True, text=True, env=env, timeout=600, check=False, cwd=str(tmp_path))
    return proc


def recap(proc, host="node1"):
    for line in proc.stdout.splitlines():
        if line.startswith(host + " ") and "ok=" in line:
            return dict(item.split("=") for item in line.split(":", 1)[1].split())
    raise AssertionError("no recap for %s:\n%s\n%s" % (host, proc.stdout, proc.stderr))


def tree(root):
    out = {}
    for dirpath, _dirs, files in os.walk(str(root)):
        for name in files:
            with open(os.path.join(dirpath, name)) as handle:
                out[os.path.relpath(os.path.join(dirpath, name), str(root))] = handle.read()
    return out


@pytest.fixture
def etc(tmp_path):
    dest = tmp_path / "etc"
    shutil.copytree(os.path.join(FIXTURES, "cluster"), str(dest))
    return dest


def test_check_mode_then_apply_then_idempotent(tmp_path, etc):
    variables = {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_backup": False}
    before = tree(etc)

    check = play(tmp_path, variables, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert tree(etc) == before, "check mode wrote files"
    assert "X11,Alloc,Contain" in check.stdout          # the diff is shown
    assert int(recap(check)["changed"]) > 0

    first = play(tmp_path, variables)
    assert first.returncode == 0, first.stdout + first.stderr
    after = tree(etc)
    assert "PROLOGFLAGS=X11,Alloc,Contain # X11" in after["slurm.conf.d/10-prolog.conf"]
    assert "TaskPlugin=task/affinity,task/cgroup \\\n" in after["slurm.conf"]
    assert "proctracktype=proctrack/cgroup   #" in after["slurm.conf"]
    assert "ConstrainCores=yes" in after["cgroup.conf"]
    assert set(after) - set(before) == {"cgroup.conf"}

    second = play(tmp_path, variables)
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second)["changed"] == "0", second.stdout
    assert tree(etc) == after


def test_existing_cgroup_conf_is_never_changed(tmp_path, etc):
    (etc / "cgroup.conf").write_text("ConstrainCores=no\n")
    proc = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (etc / "cgroup.conf").read_text() == "ConstrainCores=no\n"


def test_nohold_is_refused_before_writing(tmp_path, etc):
    prolog = etc / "slurm.conf.d" / "10-prolog.conf"
    prolog.write_text("PrologFlags=Alloc,NoHold\n")
    before = tree(etc)
    proc = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf")})
    assert proc.returncode != 0
    assert "NoHold" in proc.stdout
    assert tree(etc) == before


def test_configless_node_edits_the_controller_file(tmp_path, etc):
    """node1 has no slurm.conf, slurmd runs with --conf-server: the edit goes
    to ctl1's file (delegate_to), which is outside the play."""
    (tmp_path / "default-slurmd").write_text('SLURMD_OPTIONS="--conf-server ctl1:6817"\n')
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "slurm.conf").write_text("# cache\n")
    variables = {"adopt_slurm_conf_path": str(tmp_path / "absent" / "slurm.conf"),
                 "adopt_slurm_conf_controller": "ctl1",
                 "adopt_slurm_conf_controller_path": str(etc / "slurm.conf")}
    proc = play(tmp_path, variables)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "X11,Alloc,Contain" in (etc / "slurm.conf.d" / "10-prolog.conf").read_text()
    assert "node1 -> ctl1" in proc.stdout
    assert (etc / "cgroup.conf").exists()
    assert (tmp_path / "cache" / "slurm.conf").read_text() == "# cache\n"


def test_configless_without_controller_fails_clearly(tmp_path, etc):
    (tmp_path / "default-slurmd").write_text('SLURMD_OPTIONS="--conf-server ctl1"\n')
    proc = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf")})
    assert proc.returncode != 0
    assert "adopt_slurm_conf_controller" in proc.stdout


def lab_up():
    if not os.path.exists(LAB_CONF):
        return False
    proc = subprocess.run(["scontrol", "ping"], env=dict(os.environ, SLURM_CONF=LAB_CONF),
                          capture_output=True, timeout=30, check=False)
    return proc.returncode == 0 and b"UP" in proc.stdout


@pytest.mark.node
def test_verify_against_the_running_lab(tmp_path):
    """Verification reads the real 22.05 lab controller (read-only): passes
    for what it runs with, fails with a clear message for what it does not."""
    if not lab_up():
        if os.environ.get("ADOPT_LAB_REQUIRED"):
            pytest.fail("the host lab is not up")
        pytest.skip("the host lab is not up")
    conf = tmp_path / "etc" / "slurm.conf"
    conf.parent.mkdir()
    shutil.copy(LAB_CONF, str(conf))
    shutil.copy(os.path.join(os.path.dirname(LAB_CONF), "cgroup.conf"), str(conf.parent / "cgroup.conf"))
    variables = {"adopt_slurm_conf_path": str(conf), "adopt_slurm_conf_verify": True,
                 "adopt_slurm_conf_verify_retries": 0}
    env = {"SLURM_CONF": LAB_CONF}
    good = play(tmp_path, variables, environment=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "slurmctld runs with PrologFlags=Alloc,Contain" in good.stdout
    assert recap(good)["changed"] == "0"
    assert conf.read_text() == open(LAB_CONF).read()

    variables["adopt_slurm_conf_prolog_flags"] = ["Contain", "X11"]
    bad = play(tmp_path, dict(variables, adopt_slurm_conf_backup=False), environment=env)
    assert bad.returncode != 0
    assert "missing: PrologFlags x11" in bad.stdout
