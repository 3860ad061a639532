# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node-side scripts of the fleet roles, without the lab: the snapshot
used for rollbacks, the drift check's PAM analysis and its drain policy."""

import importlib.util
import os

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


def test_snapshot_save_is_unchanged_when_nothing_differs(tmp_path):
    (tmp_path / "f").write_text("a\n")
    snap = str(tmp_path / "snap")
    assert snapshot.save(snap, [str(tmp_path / "f")], force=True)["changed"]
    kept = snapshot.save(snap, [str(tmp_path / "f")])
    assert kept["changed"] is False and kept["kept_existing"]


# ---------------------------------------------------------------------------
# the drift check's view of the PAM stack
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


def _problems(pamd):
    conf = dict(check.DEFAULTS, pam_dir=pamd)
    rules, problems = check.effective_stack("sshd", "account", pamd)
    found, _info = check.analyse_account(rules, conf)
    return problems + found


def test_debian_stack_with_adopt_last_is_clean(tmp_path):
    pamd = _pamd(tmp_path, "account required pam_nologin.so\n@include common-account\n" + ADOPT,
                 common_account="account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\n"
                                "account requisite pam_deny.so\naccount required pam_permit.so\n",
                 common_session="session required pam_unix.so\n# session optional pam_systemd.so\n")
    assert _problems(pamd) == []
    assert check.pam_systemd_rules("sshd", pamd) == ([], [])


def test_short_circuit_in_an_included_file_is_reported(tmp_path):
    pamd = _pamd(tmp_path, "account include password-auth\n" + ADOPT,
                 password_auth="account required pam_unix.so\naccount sufficient pam_localuser.so\n")
    problems = _problems(pamd)
    assert len(problems) == 1 and "pam_localuser.so" in problems[0] and "password-auth:2" in problems[0]


def test_missing_or_not_last_or_dash_adopt_rule(tmp_path):
    pamd = _pamd(tmp_path, "account required pam_unix.so\n")
    assert "no adopt rule" in _problems(pamd)[0]
    other = tmp_path / "b"
    other.mkdir()
    pamd = _pamd(other, "-" + ADOPT + "account required pam_permit.so\n")
    text = " ".join(_problems(pamd))
    assert "'-account'" in text and "not last: account required pam_permit.so" in text


def test_pam_systemd_back_through_an_include(tmp_path):
    pamd = _pamd(tmp_path, ADOPT + "session include common-session\n",
                 common_session="session required pam_unix.so\n-session optional pam_systemd.so\n")
    rules, _problems = check.pam_systemd_rules("sshd", pamd)
    assert [r.where() for r in rules] == [os.path.join(pamd, "common-session") + ":2"]


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
