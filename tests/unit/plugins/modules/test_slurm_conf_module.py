# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/modules/slurm_conf.py run as Ansible runs it (module args in, JSON out)."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.hpc.slurm_adopt.plugins.modules import slurm_conf as module

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "slurm_conf")
ADOPT = dict(settings={"ProctrackType": "proctrack/cgroup"},
             merge={"PrologFlags": ["Contain"], "TaskPlugin": ["task/cgroup"]})


try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:                     # ansible-core < 2.19
    import contextlib
    from unittest import mock

    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args):
        with mock.patch.object(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))):
            yield


def run(capsys, check_mode=False, diff=False, **args):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff,
                _ansible_tmpdir=None, _ansible_remote_tmp="/tmp", _ansible_keep_remote_files=False)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exc.value.code
    return result


@pytest.fixture
def cluster(tmp_path):
    dest = tmp_path / "etc"
    shutil.copytree(os.path.join(FIXTURES, "cluster"), str(dest))
    return dest


def snapshot(root):
    out = {}
    for dirpath, _dirs, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path) as handle:
                out[path] = handle.read()
    return out


def test_adopt_prerequisites_edit_the_right_files(capsys, cluster):
    main = str(cluster / "slurm.conf")
    prolog = str(cluster / "slurm.conf.d" / "10-prolog.conf")
    before = snapshot(cluster)
    result = run(capsys, path=main, **ADOPT)
    assert result["rc"] == 0 and result["changed"] is True
    assert sorted(result["changed_files"]) == sorted([main, prolog])
    assert result["edits"]["PrologFlags"] == {"before": "X11,Alloc", "after": "X11,Alloc,Contain",
                                              "file": prolog, "action": "changed"}
    assert result["edits"]["TaskPlugin"]["after"] == "task/affinity,task/cgroup"
    assert result["edits"]["ProctrackType"]["action"] == "changed"
    assert sorted(result["changed_keys"]) == ["ProctrackType", "PrologFlags", "TaskPlugin"]
    after = snapshot(cluster)
    # only these two files changed, and each only in the edited lines
    assert [p for p in after if after[p] != before[p]] == sorted([main, prolog], key=list(after).index)
    assert "PROLOGFLAGS=X11,Alloc,Contain # X11 forwarding for visualisation users\n" in after[prolog]
    assert "proctracktype=proctrack/cgroup   # ProctrackType spelled in lower case on purpose\n" in after[main]


def test_second_run_changes_nothing(capsys, cluster):
    main = str(cluster / "slurm.conf")
    run(capsys, path=main, **ADOPT)
    before = snapshot(cluster)
    result = run(capsys, path=main, **ADOPT)
    assert result["changed"] is False and result["changed_files"] == [] and result["changed_keys"] == []
    assert snapshot(cluster) == before


def test_check_mode_with_diff_writes_nothing(capsys, cluster):
    main = str(cluster / "slurm.conf")
    before = snapshot(cluster)
    result = run(capsys, check_mode=True, diff=True, path=main, **ADOPT)
    assert result["changed"] is True
    assert snapshot(cluster) == before
    diffs = {d["before_header"]: d for d in result["diff"]}
    prolog = str(cluster / "slurm.conf.d" / "10-prolog.conf")
    assert set(diffs) == {main, prolog}
    assert diffs[prolog]["before"] == before[prolog]
    assert "X11,Alloc,Contain" in diffs[prolog]["after"]


def test_mode_owner_kept_and_backup(capsys, cluster):
    main = cluster / "slurm.conf"
    os.chmod(str(main), 0o640)
    os.chown(str(main), 1234, 4321) if os.geteuid() == 0 else None
    inode = os.stat(str(main)).st_ino
    result = run(capsys, path=str(main), backup=True, **ADOPT)
    info = os.stat(str(main))
    assert stat.S_IMODE(info.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (1234, 4321)
    assert info.st_ino != inode             # replaced by rename, not rewritten in place
    backup = result["backup_files"][str(main)]
    with open(backup) as handle:
        assert "proctrack/linuxproc" in handle.read()
    assert not [n for n in os.listdir(str(cluster)) if n.startswith(".slurm.conf.")]


def test_missing_key_appended_to_main_file(capsys, tmp_path):
    path = tmp_path / "slurm.conf"
    path.write_text("ClusterName=x\nNodeName=n1 CPUs=1\n")
    result = run(capsys, path=str(path), **ADOPT)
    assert result["changed"] is True
    assert path.read_text() == ("ClusterName=x\nNodeName=n1 CPUs=1\n"
                                "ProctrackType=proctrack/cgroup\nPrologFlags=Contain\nTaskPlugin=task/cgroup\n")
    assert result["edits"]["PrologFlags"]["action"] == "added"


def test_state_absent(capsys, cluster):
    main = str(cluster / "slurm.conf")
    result = run(capsys, path=main, state="absent", merge={"PrologFlags": ["x11"]},
                 settings={"KillWait": None})
    assert result["changed"] is True
    assert result["edits"]["PrologFlags"]["after"] == "Alloc"
    with open(main) as handle:
        assert "\nInactiveLimit=0 MinJobAge=300\n" in handle.read()


def test_merge_items_as_comma_string(capsys, tmp_path):
    path = tmp_path / "slurm.conf"
    path.write_text("TaskPlugin=affinity\n")
    result = run(capsys, path=str(path), merge={"TaskPlugin": "task/cgroup, task/affinity"})
    assert path.read_text() == "TaskPlugin=affinity,task/cgroup\n"
    assert result["edits"]["TaskPlugin"]["before"] == "affinity"


@pytest.mark.parametrize("args, message", [
    (dict(settings={"NodeName": "x"}), "not edited"),
    (dict(settings={"PrologFlags": "a"}, merge={"prologflags": ["b"]}), "both settings and merge"),
    (dict(settings={"Bad Key": "x"}), "not a slurm.conf key"),
    (dict(settings={"Key": 'a"b'}), "double quote"),
])
def test_refused(capsys, tmp_path, args, message):
    path = tmp_path / "slurm.conf"
    path.write_text("ClusterName=x\n")
    result = run(capsys, path=str(path), **args)
    assert result["failed"] is True and message in result["msg"]
    assert path.read_text() == "ClusterName=x\n"


def test_missing_file(capsys, tmp_path):
    result = run(capsys, path=str(tmp_path / "nope.conf"), **ADOPT)
    assert result["failed"] is True and "does not exist" in result["msg"]


def test_lab_slurm_conf_copy(capsys, tmp_path):
    """The lab's real (22.05) slurm.conf already has everything: no change."""
    path = tmp_path / "slurm.conf"
    shutil.copy(os.path.join(FIXTURES, "lab-22.05-slurm.conf"), str(path))
    result = run(capsys, path=str(path), **ADOPT)
    assert result["changed"] is False
    assert result["edits"]["PrologFlags"]["before"] == "contain"
    assert result["edits"]["TaskPlugin"]["before"] == "task/cgroup,task/affinity"


LAB_CONF = "/var/lib/slurm-adopt-lab/host/etc/slurm.conf"


def lab_scontrol(conf):
    return subprocess.run(["scontrol", "show", "config"], env=dict(os.environ, SLURM_CONF=conf),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.node
def test_real_slurm_parses_the_edited_files(capsys, tmp_path):
    """Slurm 22.05's own parser (scontrol, against the running lab controller,
    read-only) rejects the broken copy of the lab's slurm.conf and accepts the
    module's edit of it, Include file included."""
    if not os.path.exists(LAB_CONF) or lab_scontrol(LAB_CONF).returncode != 0:
        if os.environ.get("ADOPT_LAB_REQUIRED"):
            pytest.fail("the host lab is not up")
        pytest.skip("the host lab is not up")
    with open(LAB_CONF) as handle:
        text = handle.read()
    text = (text.replace("PrologFlags=contain\n", "PrologFlags=X11\n")
            .replace("TaskPlugin=task/cgroup,task/affinity\n", "TaskPlugin=affinity\n")
            .replace("ProctrackType=proctrack/cgroup\n", "Include site.conf\n"))
    assert "Include site.conf" in text and "PrologFlags=X11\n" in text
    (tmp_path / "slurm.conf").write_text(text)
    (tmp_path / "site.conf").write_text("# site\nProctrackType=proctrack/linuxproc # site choice\n")
    before = lab_scontrol(str(tmp_path / "slurm.conf"))
    assert before.returncode != 0 and "Invalid combination" in before.stderr

    result = run(capsys, path=str(tmp_path / "slurm.conf"), **ADOPT)
    assert sorted(result["changed_files"]) == sorted([str(tmp_path / "slurm.conf"), str(tmp_path / "site.conf")])
    assert (tmp_path / "site.conf").read_text() == "# site\nProctrackType=proctrack/cgroup # site choice\n"
    after = lab_scontrol(str(tmp_path / "slurm.conf"))
    assert after.returncode == 0, after.stderr
    assert "error" not in after.stderr.lower()
