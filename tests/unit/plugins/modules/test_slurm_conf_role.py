# SPDX-License-Identifier: GPL-3.0-or-later
"""The adopt_slurm_conf role, run by ansible-playbook against this machine
(connection local) on copies of the fixtures: check mode, edit, idempotence,
configless delegation, and verification against the running lab controller
(read-only).  The Slurm daemons are never touched (manage_daemons: false)."""

import json
import os
import re
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


def play(tmp_path, variables, *extra, hosts="node1", environment=None, tasks_from=None, report=None):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[all]\nnode1 ansible_connection=local ansible_python_interpreter=%s\n"
                         "ctl1 ansible_connection=local ansible_python_interpreter=%s\n"
                         % (sys.executable, sys.executable))
    book = tmp_path / "play.yml"
    play_ = {"name": "adopt_slurm_conf test", "hosts": hosts, "gather_facts": False,
             "environment": environment or {},
             "tasks": [{"name": "the role", "ansible.builtin.include_role": dict(
                 {"name": "hpc.slurm_adopt.adopt_slurm_conf"}, **({"tasks_from": tasks_from} if tasks_from else {}))}]}
    if report:
        play_["tasks"].append({"name": "report", "ansible.builtin.debug": {"msg": report}})
    book.write_text(json.dumps([play_]))
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


def test_verify_mode_names_what_is_missing_and_writes_nothing(tmp_path, etc):
    """slurm.conf belongs to another tool: verify changes nothing and fails
    with each missing prerequisite; on a file that has them it passes."""
    before = tree(etc)
    proc = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_mode": "verify",
                           "adopt_slurm_conf_verify": False})
    assert proc.returncode != 0
    assert "PrologFlags must become X11,Alloc,Contain" in proc.stdout, proc.stdout
    assert "adopt_slurm_conf_mode is verify" in proc.stdout
    assert tree(etc) == before
    done = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_backup": False})
    assert done.returncode == 0, done.stdout
    after = tree(etc)
    # (with adopt_slurm_conf_verify, the running configuration is checked too)
    proc = play(tmp_path, {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_mode": "verify",
                           "adopt_slurm_conf_verify": False})
    assert proc.returncode == 0 and "must become" not in proc.stdout, proc.stdout
    assert tree(etc) == after


def test_a_shared_file_gives_every_host_the_change(tmp_path, etc):
    """node1 and ctl1 share one slurm.conf (as over NFS).  With one fork,
    node1 edits it first; ctl1 then finds nothing to do in the file itself,
    but its file changed under it: it must take node1's changed keys, or its
    slurmd would never get the restart that TaskPlugin needs."""
    variables = {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_backup": False}
    proc = play(tmp_path, variables, "--forks", "1", hosts="node1,ctl1",
                report="KEYS {{ inventory_hostname }} {{ __adopt_slurm_conf_changed_keys | sort | join(',') }}"
                       " BY-ME {{ __adopt_slurm_conf_edited_by_me }}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = {h: (k, m) for h, k, m in re.findall(r'"msg": "KEYS (\S+) (\S*) BY-ME (\S+)"', proc.stdout)}
    assert keys["node1"] == ("ProctrackType,PrologFlags,TaskPlugin", "True"), proc.stdout
    assert keys["ctl1"] == ("ProctrackType,PrologFlags,TaskPlugin", "False"), proc.stdout


def test_health_check_program_set_kept_and_removed_only_when_ours(tmp_path, etc):
    ours = "/usr/sbin/slurm-adopt-healthcheck"
    variables = {"adopt_slurm_conf_path": str(etc / "slurm.conf"), "adopt_slurm_conf_backup": False,
                 "adopt_slurm_conf_health_check_program": ours, "adopt_slurm_conf_health_check_interval": 0}
    proc = play(tmp_path, variables)
    assert proc.returncode == 0, proc.stdout
    conf = (etc / "slurm.conf").read_text()
    assert "HealthCheckProgram=%s\n" % ours in conf and "HealthCheckInterval=0\n" in conf, conf
    assert "HealthCheckNodeState=ANY\n" in conf
    proc = play(tmp_path, variables, tasks_from="health_check_absent")
    assert proc.returncode == 0, proc.stdout
    assert "HealthCheck" not in (etc / "slurm.conf").read_text()
    # a site's own program is kept, and never removed
    with open(str(etc / "slurm.conf"), "a") as handle:
        handle.write("HealthCheckProgram=/usr/sbin/nhc\nHealthCheckInterval=600\n")
    proc = play(tmp_path, variables)
    assert proc.returncode == 0 and "left as it is" in proc.stdout, proc.stdout
    proc = play(tmp_path, variables, tasks_from="health_check_absent")
    assert proc.returncode == 0, proc.stdout
    conf = (etc / "slurm.conf").read_text()
    assert "HealthCheckProgram=/usr/sbin/nhc\n" in conf and "HealthCheckInterval=600\n" in conf, conf


def test_idle_policy_leaves_a_node_with_job_steps_alone(tmp_path):
    """A slurmd restart is recorded as needed; the node has job steps
    (`scontrol listpids` lists one) and the policy is idle: slurmd must not
    be restarted, and the record stays for the next run.  (Stand-ins for
    scontrol and systemctl: this machine's PID 1 is not systemd.)"""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "scontrol").write_text("#!/bin/sh\n[ \"$1\" = listpids ] && printf 'PID JOBID STEPID LOCALID GLOBALID\\n"
                                   "4242 17 extern 0 0\\n' && exit 0\nexit 1\n")
    (stub / "systemctl").write_text("#!/bin/sh\necho active\n")
    for name in ("scontrol", "systemctl"):
        os.chmod(str(stub / name), 0o755)
    pending = tmp_path / "pending"
    pending.write_text("TaskPlugin\n")
    variables = {"adopt_slurm_conf_slurmd_restart": "idle", "adopt_slurm_conf_pending_file": str(pending)}
    proc = play(tmp_path, variables, tasks_from="slurmd",
                environment={"PATH": "%s:%s" % (stub, os.environ.get("PATH", ""))})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "it keeps its old plugins until it is restarted" in proc.stdout, proc.stdout
    assert "Restart slurmd (running jobs keep running)] ***\nskipping" in proc.stdout, proc.stdout
    assert pending.read_text() == "TaskPlugin\n"


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
