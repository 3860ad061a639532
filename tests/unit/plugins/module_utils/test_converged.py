# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged fast path's node side (module_utils/_converged.py): the record
a full run writes and the decision the next run takes from it, on real files
in a temporary directory, with a real drift-check stand-in run as a
subprocess (a script that prints the check's JSON)."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _converged as C

FP = "f" * 64


def fake_check(tmp_path, checks, rc=0, text=None):
    script = tmp_path / "check.py"
    out = text if text is not None else json.dumps({"status": "x", "checks": checks})
    script.write_text("import sys\nsys.stdout.write(%r)\nsys.exit(%d)\n" % (out, rc))
    return [sys.executable, str(script)]


GREEN = [{"check": "module_file", "status": "ok", "message": "fine"},
         {"check": "logind", "status": "ok", "message": "masked"}]


def fake_systemctl(states):
    def run(argv):
        assert argv[:2] == ["systemctl", "show"]
        units = argv[argv.index("--") + 1:]
        blocks = ["Id=%s\nLoadState=loaded\nActiveState=%s\nUnitFileState=enabled" % (u, states.get(u, "active"))
                  for u in units]
        return 0, "\n\n".join(blocks) + "\n", ""
    return run


@pytest.fixture
def node(tmp_path):
    """A node's managed files: a PAM dir with a symlink, a module dir with
    byte code, a state dir that holds the record."""
    root = tmp_path / "node"
    (root / "pam.d").mkdir(parents=True)
    (root / "pam.d" / "sshd").write_text("account required pam_unix.so\n")
    os.symlink("sshd", str(root / "pam.d" / "login"))
    (root / "lib" / "__pycache__").mkdir(parents=True)
    (root / "lib" / "mod.py").write_text("x = 1\n")
    (root / "lib" / "__pycache__" / "mod.pyc").write_bytes(b"\0")
    (root / "state").mkdir()
    env = {"SUDO_USER": "ops"}
    args = dict(paths=[str(root / "pam.d"), str(root / "lib"), str(root / "state"), str(root / "absent")],
                exclude=["__pycache__", str(root / "state" / "record.json")],
                units=["a.service", "b.socket"], must_be_absent=[str(root / "state" / "pending")])
    return root, str(root / "state" / "record.json"), args, env


def record(node_, run=None, fingerprint=FP):
    root, rec, args, env = node_
    return C.write_record(rec, fingerprint, run=run or fake_systemctl({}), environ=env, **args)


def decide(node_, check, run=None, fingerprint=FP, env=None):
    root, rec, args, env0 = node_
    return C.decide(rec, fingerprint, check_argv=check, run=run or _runner(), environ=env or env0, **args)


def _runner(states=None):
    """systemctl answers from `states`; anything else (the drift check) runs for
    real, as the module's run_command would run it: (rc, stdout, stderr)."""
    fake = fake_systemctl(states or {})

    def run(argv):
        if argv[0] == "systemctl":
            return fake(argv)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              check=False)
        return proc.returncode, proc.stdout, proc.stderr
    return run


def test_no_record_means_the_full_run(node, tmp_path):
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN))
    assert not ok and "no record" in why


def test_same_inputs_same_state_green_check_is_converged(node, tmp_path):
    assert record(node) == (True, "recorded")
    assert record(node) == (False, "recorded already")     # idempotent: no timestamp in it
    ok, why, diffs = decide(node, fake_check(tmp_path, GREEN))
    assert ok, why
    assert diffs == [] and "drift check green (2 checks)" in why


@pytest.mark.parametrize("change", ["content", "mode", "new file", "removed", "symlink", "absent appears", "new dir"])
def test_any_change_of_a_managed_file_means_the_full_run(node, tmp_path, change):
    root = node[0]
    record(node)
    if change == "content":
        (root / "pam.d" / "sshd").write_text("account required pam_permit.so\n")
    elif change == "mode":
        os.chmod(str(root / "pam.d" / "sshd"), 0o600)
    elif change == "new file":
        (root / "pam.d" / "other").write_text("")
    elif change == "removed":
        os.unlink(str(root / "lib" / "mod.py"))
    elif change == "symlink":
        os.unlink(str(root / "pam.d" / "login"))
        os.symlink("other", str(root / "pam.d" / "login"))
    elif change == "absent appears":
        (root / "absent").write_text("")
    else:
        (root / "lib" / "sub").mkdir()
    ok, why, diffs = decide(node, fake_check(tmp_path, GREEN))
    assert not ok and why.startswith("changed since the last full run"), why
    assert len(diffs) == 1, diffs


def test_byte_code_and_the_record_itself_are_not_compared(node, tmp_path):
    root = node[0]
    record(node)
    (root / "lib" / "__pycache__" / "mod.pyc").write_bytes(b"other")
    (root / "lib" / "__pycache__" / "new.pyc").write_bytes(b"")
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN))
    assert ok, why


def test_other_inputs_mean_the_full_run(node, tmp_path):
    record(node)
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN), fingerprint="e" * 64)
    assert not ok and "inputs changed" in why
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN), fingerprint="")
    assert not ok and "no fingerprint" in why


def test_a_unit_in_another_state_means_the_full_run(node, tmp_path):
    record(node)
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN), run=_runner({"a.service": "inactive"}))
    assert not ok and "unit a.service: loaded active enabled -> loaded inactive enabled" in why, why


def test_another_connecting_user_means_the_full_run(node, tmp_path):
    record(node)
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN), env={"SUDO_USER": "someone"})
    assert not ok and "connecting user: ops -> someone" in why


def test_pending_restart_is_never_converged_and_never_recorded(node, tmp_path):
    root = node[0]
    record(node)
    (root / "state" / "pending").write_text("TaskPlugin\n")
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN))
    assert not ok and why.startswith("pending:")
    changed, why = record(node)
    assert changed and why.startswith("not recorded, pending")
    assert not os.path.exists(node[1])       # the old record is gone


@pytest.mark.parametrize("case", ["fail", "warn", "crash", "not json", "no checks", "missing"])
def test_drift_check_must_be_green(node, tmp_path, case):
    record(node)
    if case == "fail":
        argv = fake_check(tmp_path, GREEN + [{"check": "pam_systemd", "status": "fail", "message": "reachable"}], rc=2)
    elif case == "warn":
        argv = fake_check(tmp_path, GREEN + [{"check": "service", "status": "warn", "message": "cannot run systemctl"}])
    elif case == "crash":
        argv = fake_check(tmp_path, [], rc=1, text="Traceback (most recent call last):\n")
    elif case == "not json":
        argv = fake_check(tmp_path, [], text="OK\n")
    elif case == "no checks":
        argv = fake_check(tmp_path, [])
    else:
        argv = [str(tmp_path / "no-such-python")]
    ok, why, _diffs = decide(node, argv)
    assert not ok, why
    assert "drift check" in why


def test_empty_interpreter_means_this_python(node, tmp_path):
    record(node)
    argv = fake_check(tmp_path, GREEN)
    ok, why, _diffs = decide(node, [""] + argv[1:])
    assert ok, why


def test_a_broken_record_means_the_full_run(node, tmp_path):
    with open(node[1], "w") as handle:
        handle.write("{not json")
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN))
    assert not ok and "not JSON" in why
    with open(node[1], "w") as handle:
        json.dump({"version": 0}, handle)
    ok, why, _diffs = decide(node, fake_check(tmp_path, GREEN))
    assert not ok and "another format" in why


def test_dry_run_writes_nothing(node):
    changed, _why = C.write_record(node[1], FP, run=fake_systemctl({}), environ=node[3], dry_run=True, **node[2])
    assert changed and not os.path.exists(node[1])


def test_record_is_private_and_the_state_complete(node):
    record(node)
    assert oct(os.stat(node[1]).st_mode & 0o777) == "0o600"
    with open(node[1]) as handle:
        data = json.load(handle)
    files = data["state"]["files"]
    root = str(node[0])
    assert files[root + "/pam.d/login"] == "link -> sshd"
    assert files[root + "/absent"] == "absent"
    assert files[root + "/pam.d/sshd"].startswith("file ") and len(files[root + "/pam.d/sshd"].split()[-1]) == 64
    assert not any("__pycache__" in p for p in files)
    assert root + "/state/record.json" not in files
    assert data["state"]["user"] == "ops" and set(data["state"]["units"]) == {"a.service", "b.socket"}
    assert set(data["state"]["facts"]) == {"hostname", "python", "os_release"}


def test_globs_expand_and_unmatched_globs_are_dropped(tmp_path):
    (tmp_path / "a" / "security").mkdir(parents=True)
    got = C.expand([str(tmp_path / "*" / "security"), str(tmp_path / "nothing*"), str(tmp_path / "plain")])
    assert got == [str(tmp_path / "a" / "security"), str(tmp_path / "plain")]
