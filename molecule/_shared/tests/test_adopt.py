# SPDX-License-Identifier: GPL-3.0-or-later
"""The node after converge: configuration, running daemons and real ssh logins.

Runs against every instance of the scenario through testinfra's podman://
backend (molecule's ansible backend is about 10x slower).
"""

import hashlib
import json
import os
import re
import subprocess

import pytest
from nodeutil import (
    DENY_MESSAGE,
    MODULE_SRC,
    interface,
    molecule_hosts,
    read_remote,
    remote_files,
    ssh,
    wait_for,
)
from pamstack import PamTree

testinfra_hosts = molecule_hosts()

MODULE_DIR = "/usr/lib/slurm-adopt"
ADOPT_NEEDLE = "pam_slurm_adopt"


def sha256(path):
    """sha256 of a local file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def account_stack(host):
    """The effective account stack of sshd, includes expanded."""
    return PamTree(read_remote(host)).expand("sshd", "account")


def adopt_index(stack):
    """Index of the one adopt rule in stack."""
    idx = [i for i, rule in enumerate(stack) if rule.mentions(ADOPT_NEEDLE)]
    assert len(idx) == 1, "want exactly one adopt rule, got:\n" + "\n".join(map(repr, stack))
    return idx[0]


# ------------------------------------------------------------------ PAM stacks


def test_adopt_rule_is_last_in_account_stack(host):
    """Adopt rule last; only pam_access (admin access) may follow it."""
    stack = account_stack(host)
    i = adopt_index(stack)
    rule = stack[i]
    if interface(host) == "service":
        # the client, by name from the PAM module directory; the options only
        assert rule.module_name == "pam_slurm_adopt_client.so" and rule.module == rule.module_name, rule
        assert rule.args[:2] == ["action_adopt_failure=deny", "action_generic_failure=deny"], rule
    else:
        assert rule.module_name == "pam_python.so", rule
        assert rule.args[0] == MODULE_DIR + "/pam_slurm_adopt.py", rule
    after = [r for r in stack[i + 1:] if r.module_name != "pam_access.so"]
    assert not after, "rules after the adopt rule:\n" + "\n".join(map(repr, stack))


def only_system_users(rule):
    """True for a rule that can succeed only for system accounts (uid < 1000).

    RHEL's authselect profiles end the account stack early for system users
    (`sufficient pam_usertype.so issystem`, RHEL 8: `pam_succeed_if.so uid <
    1000`); that cannot let an ordinary user past the adopt rule.
    """
    args = " ".join(rule.args)
    if rule.module_name == "pam_usertype.so":
        return rule.args[:1] == ["issystem"]
    if rule.module_name == "pam_succeed_if.so":
        match = re.fullmatch(r"uid\s*(<|<=)\s*(\d+)(\s+quiet\w*)*", args.strip())
        if match:
            limit = int(match.group(2)) - (1 if match.group(1) == "<" else 0)
            return limit < 1000
    return False


def test_nothing_short_circuits_before_adopt(host):
    """No sufficient/done rule and no jump over the adopt rule before it.

    Exception: rules that only ever succeed for system accounts (see
    only_system_users); the login tests check bob is really denied.
    """
    stack = account_stack(host)
    i = adopt_index(stack)
    for pos, rule in enumerate(stack[:i]):
        if only_system_users(rule) or rule.in_substack:
            continue   # a substack's sufficient/jump ends only the substack
        assert not rule.short_circuits(), "short-circuit before adopt: %r" % rule
        assert pos + rule.jump() < i, "jumps over the adopt rule: %r" % rule
    assert not any(r.module_name == "pam_localuser.so" and not r.in_substack for r in stack[:i])


def test_admin_access_after_adopt(host):
    """pam_access after the adopt rule, reading the roles' own access file
    (never the shared access.conf, which other services read too); that file
    admits root and wheel only."""
    stack = account_stack(host)
    i = adopt_index(stack)
    access = [r for r in stack[i + 1:] if r.module_name == "pam_access.so"]
    assert access, "no pam_access after the adopt rule"
    assert stack[i].control == "sufficient" or stack[i].control.startswith("["), stack[i]
    files = [a.split("=", 1)[1] for a in access[0].args if a.startswith("accessfile=")]
    assert files == ["/etc/security/slurm-adopt-access.conf"], access[0]
    rules = [
        line.strip()
        for line in host.file(files[0]).content_string.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for want in ("+:root:ALL", "+:wheel:ALL", "-:ALL:ALL"):
        assert want in [r.replace(" ", "") for r in rules], rules
    # the catch-all deny comes after the allows
    flat = [r.replace(" ", "") for r in rules]
    assert flat.index("-:ALL:ALL") > flat.index("+:wheel:ALL") > -1


def pam_stack_info(host):
    """Run the collection's hpc.slurm_adopt.pam_stack_info on the node."""
    name = host.check_output("hostname")
    proc = subprocess.run(
        [
            "ansible",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            name,
            "-o",
            "-m",
            "hpc.slurm_adopt.pam_stack_info",
            "-a",
            "service=sshd type=account",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1])


def test_collections_pam_stack_info_agrees(host):
    """The collection's own checker says healthy, and sees the same stack as ours."""
    info = pam_stack_info(host)
    assert info["adopt_last"], info["problems"]
    assert not info["pam_systemd"], info["pam_systemd"]
    assert not info["short_circuits"], info["short_circuits"]
    assert not info["errors"], info["errors"]
    assert not info["problems"], info["problems"]
    # the collection lists a substack line itself, then its rules; ours only the rules
    theirs = [(r["control"], r["module"].rsplit("/", 1)[-1]) for r in info["stack"]
              if r["control"] not in ("substack", "include")]
    ours = [(r.control, r.module_name) for r in account_stack(host)]
    assert theirs == ours


def test_pam_systemd_gone_everywhere_reachable(host):
    """No active pam_systemd rule in any file reachable from sshd."""
    read = read_remote(host)
    files, stacks = PamTree(read).reachable("sshd")
    offenders = [r for rules in stacks.values() for r in rules if r.mentions("pam_systemd")]
    assert not offenders, offenders
    # and no stray active line in those files either (e.g. another type)
    for path in files:
        for line in read(path).splitlines():
            code = line.split("#", 1)[0]
            assert "pam_systemd" not in code, "%s: %s" % (path, line)


# ------------------------------------------------------------------ services


def test_logind_masked_and_inactive(host):
    assert host.run("systemctl is-enabled systemd-logind").stdout.strip() == "masked"
    assert host.run("systemctl is-active systemd-logind").stdout.strip() == "inactive"
    assert not host.service("systemd-logind").is_running


def test_sshd_uses_pam(host):
    out = host.check_output("sshd -T")
    assert re.search(r"^usepam yes$", out, re.M | re.I), out


# ------------------------------------------------------------------ Slurm


def slurm_conf(host, path="/etc/slurm/slurm.conf"):
    """Key -> value of a slurm.conf (keys lower-cased)."""
    conf = {}
    for line in host.file(path).content_string.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and not line.lower().startswith(("nodename", "partitionname")):
            key, value = line.split("=", 1)
            conf[key.strip().lower()] = value.strip()
    return conf


def running_config(host):
    """Key -> value of `scontrol show config` (keys lower-cased)."""
    conf = {}
    for line in host.check_output("scontrol show config").splitlines():
        if " = " in line:
            key, value = line.split(" = ", 1)
            conf[key.strip().lower()] = value.strip()
    return conf


def test_slurm_conf_keys(host):
    conf = slurm_conf(host)
    assert "contain" in conf["prologflags"].lower().split(","), conf
    assert "task/cgroup" in conf["taskplugin"].split(","), conf
    assert conf["proctracktype"] == "proctrack/cgroup", conf
    assert host.file("/etc/slurm/cgroup.conf").is_file


def test_slurm_running_config(host):
    conf = running_config(host)
    assert "contain" in conf["prologflags"].lower().split(","), conf["prologflags"]
    assert "task/cgroup" in conf["taskplugin"].split(","), conf["taskplugin"]
    assert conf["proctracktype"] == "proctrack/cgroup", conf["proctracktype"]


def test_daemons_up_and_node_idle_or_allocated(host):
    for unit in ("munge", "slurmctld", "slurmd", "ssh"):
        assert host.service(unit).is_running, unit
    state = host.check_output("sinfo -h -N -o %T")
    assert state in ("idle", "mixed", "allocated"), state


# ------------------------------------------------------------------ module file


def test_module_file_is_the_collections(host):
    path = MODULE_DIR + "/pam_slurm_adopt.py"
    got = remote_files(host, [path])
    assert path in got, "%s is missing" % path
    assert got[path] == ["root", "root", 0o644, sha256(MODULE_SRC / "pam_slurm_adopt.py")]


def test_module_package_is_the_collections(host):
    sources = sorted((MODULE_SRC / "slurm_adopt").glob("*.py"))
    assert sources
    paths = {"%s/slurm_adopt/%s" % (MODULE_DIR, src.name): src for src in sources}
    got = remote_files(host, list(paths))
    for path, src in paths.items():
        assert path in got, "%s is missing" % path
        owner, _group, mode, digest = got[path]
        assert owner == "root", path
        assert not mode & 0o022, "%s is group/world-writable" % path
        assert digest == sha256(src), "%s differs from %s" % (path, src)


def test_explain_runs_on_the_node(host):
    """The installed module imports under the node's python3 and explains."""
    out = host.run("python3 %s/pam_slurm_adopt.py explain bob" % MODULE_DIR)
    assert out.rc == 1, out.stdout + out.stderr
    assert re.search(r"^decision: .*\(deny\)$", out.stdout, re.M), out.stdout


# ------------------------------------------------------------------ real logins


def test_alice_with_job_is_adopted_into_extern_step(host, alice_job):
    out = ssh(
        host,
        "alice",
        "echo PID=$$; cat /proc/self/cgroup; sleep 2",
    )
    assert out.rc == 0, out.stderr
    pid = int(re.search(r"PID=(\d+)", out.stdout).group(1))
    cgroups = dict(
        line.split(":", 2)[1:] for line in out.stdout.splitlines() if line.count(":") >= 2
    )
    # /proc/self/cgroup shows host paths (no cgroup namespace): the container's
    # own cgroup, then the hierarchy Slurm made inside it.  (memory: the job
    # has a memory allocation, DefMemPerCPU; without one 24.11 makes no memory
    # cgroup at all.)
    for controller in ("freezer", "memory"):
        assert cgroups.get(controller, "").endswith(alice_job.extern_cgroup), out.stdout
    assert alice_job.state() == "RUNNING"
    assert pid > 0


def test_alice_session_listed_in_extern_step(host, alice_job):
    """scontrol listpids shows the ssh session's shell in the extern step."""
    cmd = (
        "runuser -u alice -- ssh %s alice@localhost 'echo $$ > /tmp/alice-ssh.pid; exec sleep 20'"
        " >/dev/null 2>&1 &"
    ) % "-o BatchMode=yes"
    host.run("rm -f /tmp/alice-ssh.pid")
    host.run(cmd)
    pidfile = host.file("/tmp/alice-ssh.pid")
    wait_for("the ssh session's pid", lambda: pidfile.exists and pidfile.content_string.strip())
    pid = int(pidfile.content_string.strip())
    wait_for(
        "pid %d in scontrol listpids" % pid,
        lambda: pid in alice_job.step_pids("extern"),
        timeout=20,
    )
    host.run("kill %d" % pid)


def test_admin_without_job_gets_in(host):
    out = ssh(host, "admin", "id -nG; cat /proc/self/cgroup")
    assert out.rc == 0, out.stderr
    assert "wheel" in out.stdout.split("\n", 1)[0].split()
    assert "/slurm_" not in out.stdout, out.stdout


@pytest.mark.parametrize("user", ["bob"])
def test_user_without_job_is_denied(host, user):
    out = ssh(host, user, "true")
    assert out.rc != 0, out.stdout
    assert DENY_MESSAGE in out.stderr, out.stderr


# ------------------------------------------------------------------ the drift check


def test_the_nodes_own_drift_check_is_green(host):
    """The check adopt_drift installed, with the configuration it derived
    from the roles' settings, on this real systemd node: every check green
    (logind really masked, the interface's files, the running Slurm config)."""
    out = host.run("python3 %s/slurm_adopt_check.py check --json --probe-user bob" % MODULE_DIR)
    report = json.loads(out.stdout)
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert set(status.values()) == {"ok"}, json.dumps(report["checks"], indent=1)
    assert out.rc == 0
    assert {"module_file", "account_stack", "admin_access", "bypass", "pam_systemd", "logind",
            "interface", "service", "slurm_config", "slurmd", "stepd_sockets", "explain"} == set(status)
    message = {c["check"]: c["message"] for c in report["checks"]}
    if interface(host) == "service":
        assert message["service"].startswith("slurm-adopt.socket enabled and active, "), message
        assert "links only libc.so.6, libpam.so.0" in message["interface"], message
    else:
        assert message["service"].startswith("interface is not service"), message
