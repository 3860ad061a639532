# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node-side scripts of the fleet roles, without the lab: the snapshot
used for rollbacks, the drift check's PAM analysis and its drain policy."""

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


snapshot = _load("slurm_adopt_snapshot", "roles/adopt_preflight/files/slurm_adopt_snapshot.py")
check = _load("slurm_adopt_check", "roles/adopt_drift/files/slurm_adopt_check.py")


# ---------------------------------------------------------------------------
# snapshot / restore
# ---------------------------------------------------------------------------

def _tree(root):
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            if os.path.islink(full):
                out[full] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[full] = ("dir", st.st_mode)
            else:
                with open(full, "rb") as handle:
                    out[full] = ("file", st.st_mode, handle.read())
    return out


def test_snapshot_restores_content_modes_links_and_absent_paths(tmp_path):
    pamd = tmp_path / "pam.d"
    pamd.mkdir()
    (pamd / "sshd").write_text("account required pam_unix.so\n")
    (pamd / "common-session").write_text("session optional pam_systemd.so\n")
    os.chmod(str(pamd / "sshd"), 0o640)
    os.symlink("/dev/null", str(tmp_path / "mask-link"))
    absent = tmp_path / "not-there.conf"
    before = _tree(str(tmp_path))
    snap = str(tmp_path / ".." / (tmp_path.name + "-snap"))
    paths = [str(pamd), str(tmp_path / "mask-link"), str(absent), str(tmp_path / "no-link")]
    assert snapshot.save(snap, paths)["changed"]
    assert snapshot.diff(snap) == []

    (pamd / "sshd").write_text("account sufficient pam_python.so x\n")
    os.chmod(str(pamd / "sshd"), 0o644)
    (pamd / "common-session").unlink()
    (pamd / "new-file").write_text("x\n")
    os.unlink(str(tmp_path / "mask-link"))
    os.symlink("/etc/elsewhere", str(tmp_path / "mask-link"))
    absent.write_text("created by the rollout\n")
    os.symlink("/dev/null", str(tmp_path / "no-link"))
    assert len(snapshot.diff(snap)) >= 5

    result = snapshot.restore(snap)
    assert result["changed"] and not result["failed"], result
    assert _tree(str(tmp_path)) == before
    assert snapshot.restore(snap)["changed"] is False


def test_snapshot_restores_a_directory_that_became_a_symlink(tmp_path):
    """The module directory of a release before 0.2.0 had a real slurm_adopt/
    package directory; the upgrade turns it into a symlink into current/.  A
    rollback must put the directory back, not write its files through the
    link into the new release."""
    base = tmp_path / "slurm-adopt"
    (base / "slurm_adopt").mkdir(parents=True)
    (base / "slurm_adopt" / "flow.py").write_text("old\n")
    (base / "releases" / "r2" / "slurm_adopt").mkdir(parents=True)
    (base / "releases" / "r2" / "slurm_adopt" / "flow.py").write_text("new\n")
    snap = str(tmp_path / "snap")
    assert snapshot.save(snap, [str(base / "slurm_adopt")])["changed"]
    os.rename(str(base / "slurm_adopt"), str(tmp_path / "old-package"))
    os.symlink("releases/r2", str(base / "current"))
    os.symlink("current/slurm_adopt", str(base / "slurm_adopt"))
    result = snapshot.restore(snap)
    assert result["changed"] and not result["failed"], result
    assert not os.path.islink(str(base / "slurm_adopt")) and (base / "slurm_adopt" / "flow.py").read_text() == "old\n"
    assert (base / "releases" / "r2" / "slurm_adopt" / "flow.py").read_text() == "new\n"


def test_snapshot_save_is_unchanged_when_nothing_differs(tmp_path):
    (tmp_path / "f").write_text("a\n")
    snap = str(tmp_path / "snap")
    assert snapshot.save(snap, [str(tmp_path / "f")], force=True)["changed"]
    kept = snapshot.save(snap, [str(tmp_path / "f")])
    assert kept["changed"] is False and kept["kept_existing"]


# ---------------------------------------------------------------------------
# the drift check's view of the PAM stack (the collection's one PAM parser)
# ---------------------------------------------------------------------------

ADOPT = ("account sufficient pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py "
         "action_adopt_failure=deny action_generic_failure=deny\n"
         "account required pam_access.so\n")


def _pamd(tmp_path, sshd, **files):
    pamd = tmp_path / "pam.d"
    pamd.mkdir()
    (pamd / "sshd").write_text(sshd)
    for name, text in files.items():
        (pamd / name.replace("_", "-")).write_text(text)
    return str(pamd)


def _conf(pamd, **more):
    conf = dict(check.DEFAULTS, pam_dir=pamd, vendor_dir=pamd + "/no-vendor-dir")
    conf.update(more)
    return conf


def _problems(pamd, **more):
    problems, _info, _entry = check.analyse_account(_conf(pamd, **more))
    return problems


def test_the_check_uses_the_collections_pam_parser():
    """One source of PAM semantics: the check runs plugins/module_utils/_pam_stack.py."""
    assert os.path.realpath(check.pam_stack().__file__) == os.path.join(
        REPO, "plugins", "module_utils", "_pam_stack.py")


def test_debian_stack_with_adopt_last_is_clean(tmp_path):
    pamd = _pamd(tmp_path, "account required pam_nologin.so\n@include common-account\n" + ADOPT,
                 common_account="account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\n"
                                "account requisite pam_deny.so\naccount required pam_permit.so\n",
                 common_session="session required pam_unix.so\n# session optional pam_systemd.so\n")
    assert _problems(pamd) == []
    assert check.pam_systemd_rules(_conf(pamd)) == ([], [])


def test_short_circuit_in_an_included_file_is_reported(tmp_path):
    pamd = _pamd(tmp_path, "account include password-auth\n" + ADOPT,
                 password_auth="account required pam_unix.so\naccount sufficient pam_localuser.so\n")
    problems = _problems(pamd)
    assert len(problems) == 1 and "pam_localuser.so" in problems[0] and "password-auth:2" in problems[0]


def test_rhel_system_user_rules_and_the_listfile_bypass_are_kept(tmp_path):
    """What docs/pam.md calls harmless is green: RHEL's pam_usertype issystem
    and pam_succeed_if uid < 1000, and the pam_listfile admin mode."""
    pamd = _pamd(tmp_path, "account include password-auth\n"
                 "account sufficient pam_listfile.so item=user sense=allow onerr=fail "
                 "file=/etc/security/slurm-adopt-allowed-users\n"
                 "account required pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py\n",
                 password_auth="account required pam_unix.so\n"
                               "account sufficient pam_usertype.so issystem\n"
                               "account sufficient pam_succeed_if.so uid < 1000 quiet\n"
                               "account [default=bad success=ok user_unknown=ignore] pam_sss.so\n"
                               "account required pam_permit.so\n")
    assert _problems(pamd) == []


def test_dash_account_adopt_rule_is_accepted(tmp_path):
    pamd = _pamd(tmp_path, "-" + ADOPT)
    assert _problems(pamd) == []


def test_missing_or_not_last_adopt_rule(tmp_path):
    pamd = _pamd(tmp_path, "account required pam_unix.so\n")
    assert "no adopt rule" in _problems(pamd)[0]
    other = tmp_path / "b"
    other.mkdir()
    pamd = _pamd(other, ADOPT + "account required pam_permit.so\n")
    assert "not last: account required pam_permit.so" in " ".join(_problems(pamd))


def test_pam_systemd_back_through_an_include(tmp_path):
    pamd = _pamd(tmp_path, ADOPT + "session include common-session\n",
                 common_session="session required pam_unix.so\n-session optional pam_systemd.so\n")
    rules, _problems = check.pam_systemd_rules(_conf(pamd))
    assert [check._where(r) for r in rules] == [os.path.join(pamd, "common-session") + ":2"]
    assert check.check_pam_systemd(_conf(pamd))[0] == check.FAIL
    assert check.check_pam_systemd(_conf(pamd, pam_systemd="any"))[0] == check.OK


def test_interface_pam_exec_needs_no_pam_python(tmp_path):
    script = tmp_path / "pam_slurm_adopt.py"
    script.write_text("#\n")
    modules = tmp_path / "security"
    modules.mkdir()
    (modules / "pam_exec.so").write_text("")
    pamd = _pamd(tmp_path, "account sufficient pam_exec.so stdout quiet %s %s pam-exec\n"
                 "account required pam_access.so\n" % (sys.executable, script))
    conf = _conf(pamd, pam_module_dirs=[str(modules)])
    assert check.check_interface(conf)[0] == check.OK, check.check_interface(conf)
    script.unlink()
    status, message = check.check_interface(conf)
    assert status == check.FAIL and str(script) in message
    (modules / "pam_exec.so").unlink()
    assert "pam_exec.so (the adopt rule's module" in check.check_interface(conf)[1]


def test_interface_pam_python(tmp_path):
    script = tmp_path / "pam_slurm_adopt.py"
    script.write_text("#\n")
    modules = tmp_path / "security"
    modules.mkdir()
    pamd = _pamd(tmp_path, "account sufficient pam_python.so %s\naccount required pam_access.so\n" % script)
    conf = _conf(pamd, pam_module_dirs=[str(modules)])
    assert check.check_interface(conf)[0] == check.FAIL          # no pam_python.so
    (modules / "pam_python.so").write_text("")
    assert check.check_interface(conf)[0] == check.OK


CLIENT_BUILD = os.path.join(REPO, "roles", "adopt_module", "files", "client", "build.sh")


def _client_rule(tmp_path, cflags):
    """The service's client built with build.sh (CFLAGS as given) and
    recorded as role adopt_module records it, named by an adopt rule."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: these tests build the service's PAM client")
    client = tmp_path / "pam_slurm_adopt_client.so"
    env = dict(os.environ)
    env.pop("CFLAGS", None)
    if cflags:
        env["CFLAGS"] = cflags
    subprocess.run(["sh", CLIENT_BUILD, str(client), "/run/slurm-adopt/adopt.sock", "/usr/bin/python3",
                    "/usr/lib/slurm-adopt/slurm_adopt_service.py"], check=True, env=env)
    record = tmp_path / "client.build-id"
    record.write_text(json.dumps({"output": check.sha256_file(str(client))}))
    pamd = _pamd(tmp_path, "account sufficient %s action_generic_failure=deny\n"
                 "account required pam_access.so\n" % client)
    return client, _conf(pamd, client_record=str(record))


@pytest.mark.parametrize("cflags,status,words", [
    (None, "ok", "links only libc.so.6, libpam.so.0"),
    ("-O2 -Wl,--no-as-needed -lm", "fail", "must link libc and libpam only, without a search path: it links libm.so.6, "),
    ("-O2 -Wl,-rpath,/tmp", "fail", "; RPATH/RUNPATH /tmp"),
])
def test_the_service_client_may_link_libc_and_libpam_only(tmp_path, cflags, status, words):
    """Its checksum is the recorded one in every case: what it links (the
    ELF dynamic section: DT_NEEDED, DT_RPATH, DT_RUNPATH) decides."""
    _client, conf = _client_rule(tmp_path, cflags)
    got = check.check_interface(conf)
    assert got[0] == status and words in got[1], got


def test_a_service_client_that_is_no_elf_file_is_red(tmp_path):
    client, conf = _client_rule(tmp_path, None)
    data = client.read_bytes()
    for broken in (data[:200], b"#!/bin/sh\n" + data):
        client.write_bytes(broken)
        pathlib.Path(conf["client_record"]).write_text(json.dumps({"output": check.sha256_file(str(client))}))
        got = check.check_interface(conf)
        assert got[0] == check.FAIL and "cannot read its dynamic section" in got[1], got


# ---------------------------------------------------------------------------
# drain policy
# ---------------------------------------------------------------------------

class FakeScontrol(object):
    def __init__(self, state, reason):
        self.state, self.reason, self.calls = state, reason, []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        if argv[:3] == ["scontrol", "show", "node"]:
            reason = ("   Reason=%s [root@2026-11-26T12:00:00]\n" % self.reason) if self.reason else ""
            return 0, "NodeName=node1 Arch=x86_64\n   State=%s ThreadsPerCore=1\n%s" % (self.state, reason)
        return 0, ""


RED = [{"check": "pam_systemd", "status": "fail", "message": "pam_systemd reachable (x:24)"}]
GREEN = [{"check": "pam_systemd", "status": "ok", "message": "fine"}]


@pytest.mark.parametrize("state,reason,results,action,update", [
    ("IDLE", "", RED, "drain", "State=DRAIN"),
    ("IDLE+DRAIN", "slurm-adopt: pam_systemd: pam_systemd reachable (x:24)", RED, "drained", None),
    ("IDLE+DRAIN", "slurm-adopt: module_file: changed", RED, "drain", "State=DRAIN"),
    ("IDLE+DRAIN", "disk replacement", RED, "left", None),
    ("IDLE+DRAIN", "slurm-adopt: pam_systemd: old", GREEN, "resume", "State=RESUME"),
    ("MIXED+DRAIN", "disk replacement", GREEN, "none", None),
    ("IDLE", "", GREEN, "none", None),
])
def test_drain_policy(monkeypatch, state, reason, results, action, update):
    fake = FakeScontrol(state, reason)
    monkeypatch.setattr(check, "run", fake)
    monkeypatch.setattr(check, "_syslog", lambda text: None)
    conf = dict(check.DEFAULTS, nodename="node1")
    assert check.drain_or_resume(conf, results, out=lambda text: None) == action
    updates = [c for c in fake.calls if c[:2] == ["scontrol", "update"]]
    if update is None:
        assert updates == []
    else:
        assert len(updates) == 1 and update in updates[0]
        if update == "State=DRAIN":
            assert updates[0][-1].startswith("Reason=slurm-adopt: pam_systemd:")


# ---------------------------------------------------------------------------
# every failure path of the checks, and that it drains the node
# ---------------------------------------------------------------------------

@pytest.fixture
def node(tmp_path):
    """A node's files for the check: the module in the release layout of
    adopt_module below a root-owned 0755 directory (not /tmp, which is
    world-writable and would make every path unsafe), an sshd stack with the
    adopt rule, the check's config."""
    if os.geteuid() != 0:
        pytest.fail("needs root (the check demands root-owned module files)")
    base = tempfile.mkdtemp(prefix="hpc-slurm-adopt-check-", dir="/var/lib")
    os.chmod(base, 0o755)
    src = os.path.join(REPO, "roles", "adopt_module", "files")
    moddir = os.path.join(base, "slurm-adopt")
    release = os.path.join(moddir, "releases", "r1")
    shutil.copytree(src, release, ignore=shutil.ignore_patterns("__pycache__", "compile_package.py"))
    os.symlink("releases/r1", os.path.join(moddir, "current"))
    os.symlink("current/pam_slurm_adopt.py", os.path.join(moddir, "pam_slurm_adopt.py"))
    os.symlink("current/slurm_adopt", os.path.join(moddir, "slurm_adopt"))
    pamd = _pamd(tmp_path, ADOPT.replace("/usr/lib/slurm-adopt", moddir)
                 + "session required pam_unix.so\n")
    conf = _conf(pamd, module_path=os.path.join(moddir, "pam_slurm_adopt.py"),
                 package_dir=os.path.join(moddir, "slurm_adopt"),
                 module_sha256=check.sha256_file(os.path.join(src, "pam_slurm_adopt.py")),
                 package_digest=check.digest(os.path.join(src, "slurm_adopt")), nodename="node1")
    config = tmp_path / "check.json"
    config.write_text(json.dumps(conf))
    yield {"base": base, "moddir": moddir, "release": release, "pamd": pamd, "conf": conf,
           "config": str(config)}
    shutil.rmtree(base, ignore_errors=True)


class FakeSlurm(object):
    """scontrol and systemctl as the check calls them; records updates."""

    def __init__(self, config=None, logind=("masked", "inactive"), state="IDLE", reason=""):
        self.config = config or {"PrologFlags": "Alloc,Contain", "ProctrackType": "proctrack/cgroup",
                                 "TaskPlugin": "task/affinity,task/cgroup", "SlurmdSpoolDir": "/nonexistent"}
        self.logind, self.state, self.reason, self.calls = logind, state, reason, []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        if argv[:3] == ["scontrol", "show", "config"]:
            return 0, "".join("%s = %s\n" % kv for kv in sorted(self.config.items()))
        if argv[:3] == ["scontrol", "show", "node"]:
            reason = ("   Reason=%s [root@2026-11-26T12:00:00]\n" % self.reason) if self.reason else ""
            return 0, "NodeName=node1 Arch=x86_64\n   State=%s ThreadsPerCore=1\n%s" % (self.state, reason)
        if argv[:2] == ["systemctl", "is-enabled"]:
            return 1, self.logind[0] + "\n"
        if argv[:2] == ["systemctl", "is-active"]:
            return 3, self.logind[1] + "\n"
        if argv[:2] == ["scontrol", "update"]:
            return 0, ""
        return 1, "unexpected command %s" % argv


def _drain(monkeypatch, node, fake):
    monkeypatch.setattr(check, "run", fake)
    monkeypatch.setattr(check, "_syslog", lambda text: None)
    out = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: out.append(" ".join(str(x) for x in a)))
    assert check.main(["drain", "--config", node["config"], "--json"]) == 0
    report = json.loads(out[-1])
    updates = [c for c in fake.calls if c[:2] == ["scontrol", "update"]]
    return report, updates


def test_a_healthy_node_is_green_and_not_drained(monkeypatch, node):
    report, updates = _drain(monkeypatch, node, FakeSlurm(config=dict(
        FakeSlurm().config, SlurmdSpoolDir=node["base"])))
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert statuses == {
        "module_file": "ok", "account_stack": "ok", "admin_access": "ok", "bypass": "ok", "pam_systemd": "ok",
        "logind": "ok", "interface": "ok", "service": "ok", "slurm_config": "ok", "stepd_sockets": "ok"}, report
    assert report["action"] == "none" and updates == []


def _fails_and_drains(monkeypatch, node, name, text, fake=None):
    fake = fake or FakeSlurm(config=dict(FakeSlurm().config, SlurmdSpoolDir=node["base"]))
    report, updates = _drain(monkeypatch, node, fake)
    status = {c["check"]: c for c in report["checks"]}
    assert status[name]["status"] == "fail" and text in status[name]["message"], status[name]
    assert report["action"] == "drain", report
    assert len(updates) == 1 and "State=DRAIN" in updates[0], updates
    assert updates[0][-1].startswith("Reason=slurm-adopt: %s:" % name), updates
    return status[name]["message"]


def test_a_modified_module_file_drains(monkeypatch, node):
    with open(os.path.join(node["release"], "pam_slurm_adopt.py"), "a") as handle:
        handle.write("# tampered\n")
    _fails_and_drains(monkeypatch, node, "module_file", "changed (sha256")


def test_a_modified_package_module_drains(monkeypatch, node):
    with open(os.path.join(node["release"], "slurm_adopt", "flow.py"), "a") as handle:
        handle.write("# tampered\n")
    _fails_and_drains(monkeypatch, node, "module_file", "changed (digest")


@pytest.mark.parametrize("how", ["group-writable release", "user-owned module file", "repointed link"])
def test_a_module_a_user_could_replace_drains(monkeypatch, node, how, tmp_path):
    if how == "group-writable release":
        os.chmod(node["release"], 0o775)
        text = "is group/world writable"
    elif how == "user-owned module file":
        os.chown(os.path.join(node["release"], "pam_slurm_adopt.py"), 65534, 65534)
        text = "owned by uid 65534"
    else:   # current -> a copy under /tmp, which anyone can write to
        copy = tmp_path / "evil"
        shutil.copytree(node["release"], str(copy))
        os.unlink(os.path.join(node["moddir"], "current"))
        os.symlink(str(copy), os.path.join(node["moddir"], "current"))
        text = "group/world writable"
    _fails_and_drains(monkeypatch, node, "module_file", text)


def test_a_removed_adopt_rule_drains(monkeypatch, node):
    path = os.path.join(node["pamd"], "sshd")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write("".join("#" + ln if "pam_slurm_adopt" in ln else ln for ln in text.splitlines(True)))
    _fails_and_drains(monkeypatch, node, "account_stack", "no adopt rule")


def test_a_short_circuit_before_the_adopt_rule_drains(monkeypatch, node):
    path = os.path.join(node["pamd"], "sshd")
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write("account sufficient pam_permit.so\n" + text)
    _fails_and_drains(monkeypatch, node, "account_stack", "short-circuit before the adopt rule")


def test_pam_systemd_back_drains(monkeypatch, node):
    with open(os.path.join(node["pamd"], "sshd"), "a") as handle:
        handle.write("session optional pam_systemd.so\n")
    _fails_and_drains(monkeypatch, node, "pam_systemd", "pam_systemd reachable")


def test_logind_unmasked_drains(monkeypatch, node):
    fake = FakeSlurm(logind=("enabled", "active"))
    fake.config["SlurmdSpoolDir"] = node["base"]
    _fails_and_drains(monkeypatch, node, "logind", "systemd-logind is enabled/active, expected masked", fake)


def test_slurm_config_without_contain_drains(monkeypatch, node):
    fake = FakeSlurm()
    fake.config.update(PrologFlags="Alloc", SlurmdSpoolDir=node["base"])
    _fails_and_drains(monkeypatch, node, "slurm_config", "PrologFlags=Alloc lacks contain", fake)


def test_an_inaccessible_stepd_socket_drains(monkeypatch, node):
    spool = os.path.join(node["base"], "spool")
    os.mkdir(spool)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(spool, "node1_42.4294967292"))
    real_access = os.access
    monkeypatch.setattr(check.os, "access",
                        lambda path, mode: False if path.endswith("_42.4294967292") else real_access(path, mode))
    try:
        fake = FakeSlurm()
        fake.config["SlurmdSpoolDir"] = spool
        _fails_and_drains(monkeypatch, node, "stepd_sockets", "node1_42.4294967292", fake)
    finally:
        sock.close()


class NoController(FakeSlurm):
    def __call__(self, argv, timeout):
        if argv[:2] == ["scontrol", "show"]:
            self.calls.append(argv)
            return 1, "slurm_load_ctl_conf error: Unable to contact slurm controller"
        return FakeSlurm.__call__(self, argv, timeout)


def test_unknown_controller_state_is_a_warning_and_never_drains(monkeypatch, node):
    report, updates = _drain(monkeypatch, node, NoController())
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["slurm_config"] == "warn" and status["stepd_sockets"] == "warn", status
    assert report["action"] == "unknown" and updates == []


ACCESS_HEADER = "# hpc.slurm_adopt: who may log in without a Slurm job\n"


def _managed_access(node, rules):
    """The admin access of role adopt_pam: its own access file, the managed
    pam_access rule reading it, and adopt_pam's record of what it wrote."""
    access = os.path.join(node["base"], "slurm-adopt-access.conf")
    text = ACCESS_HEADER + "".join(r + "\n" for r in rules)
    with open(access, "w") as handle:
        handle.write(text)
    state = os.path.join(node["base"], "pam-state")
    os.mkdir(state)
    with open(os.path.join(state, "manifest.json"), "w") as handle:
        json.dump({"files": {access: {"written_sha256": hashlib.sha256(text.encode()).hexdigest()}}}, handle)
    path = os.path.join(node["pamd"], "sshd")
    with open(path) as handle:
        sshd = handle.read()
    with open(path, "w") as handle:
        handle.write(sshd.replace("account required pam_access.so\n",
                                  "account required pam_access.so accessfile=%s # hpc.slurm_adopt:admin_access\n"
                                  % access))
    conf = dict(node["conf"], pam_state_dir=state)
    with open(node["config"], "w") as handle:
        json.dump(conf, handle)
    return access


def test_the_admin_access_file_as_written_is_green(monkeypatch, node):
    _managed_access(node, ["+:root:ALL", "+:(wheel):ALL", "-:ALL:ALL"])
    report, updates = _drain(monkeypatch, node, FakeSlurm(config=dict(FakeSlurm().config,
                                                                     SlurmdSpoolDir=node["base"])))
    status = {c["check"]: c for c in report["checks"]}
    assert status["admin_access"]["status"] == "ok", status["admin_access"]
    assert "reads %s" % os.path.join(node["base"], "slurm-adopt-access.conf") in status["admin_access"]["message"]
    assert updates == []


def test_a_missing_admin_access_file_drains(monkeypatch, node):
    os.unlink(_managed_access(node, ["+:root:ALL", "-:ALL:ALL"]))
    _fails_and_drains(monkeypatch, node, "admin_access", "is missing: pam_access aborts")


def test_an_admin_access_file_rewritten_to_admit_everyone_drains(monkeypatch, node):
    access = _managed_access(node, ["+:root:ALL", "-:ALL:ALL"])
    with open(access, "w") as handle:
        handle.write(ACCESS_HEADER + "+:root:ALL\n")      # a tool dropped the deny-all
    message = _fails_and_drains(monkeypatch, node, "admin_access", "not what pam_adopt wrote")
    assert "admits an ordinary user without a job" in message, message


def test_a_fail_open_bypass_before_the_adopt_rule_drains(monkeypatch, node):
    """pam_listfile with onerr=succeed on a list that is not there (an
    unmounted file system): everybody gets in before the adopt rule."""
    path = os.path.join(node["pamd"], "sshd")
    with open(path) as handle:
        sshd = handle.read()
    with open(path, "w") as handle:
        handle.write("account sufficient pam_listfile.so item=user sense=allow onerr=succeed "
                     "file=/nonexistent/admins\n" + sshd)
    _fails_and_drains(monkeypatch, node, "bypass", "is missing and onerr=succeed: everybody gets in")


class NoSystemctl(FakeSlurm):
    def __call__(self, argv, timeout):
        if argv[0] == "systemctl":
            self.calls.append(argv)
            return None, "[Errno 2] No such file or directory: 'systemctl'"
        return FakeSlurm.__call__(self, argv, timeout)


def test_a_check_that_cannot_decide_never_drains(monkeypatch, node):
    """systemctl cannot run: logind is a warning; the node is not drained."""
    fake = NoSystemctl()
    fake.config["SlurmdSpoolDir"] = node["base"]
    report, updates = _drain(monkeypatch, node, fake)
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["logind"] == "warn" and "fail" not in status.values(), status
    assert report["action"] == "none" and updates == []
