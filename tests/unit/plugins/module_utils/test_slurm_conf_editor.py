# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/module_utils/_slurm_conf.py: parsing and minimal edits of slurm.conf files."""

import os
import shutil

import pytest

from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _slurm_conf as sc

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "slurm_conf")


@pytest.fixture
def cluster(tmp_path):
    """A copy of the cluster fixture (main file, glob and %c includes)."""
    dest = tmp_path / "etc"
    shutil.copytree(os.path.join(FIXTURES, "cluster"), str(dest))
    return dest


def write(path, text):
    path.write_text(text)
    return str(path)


def read(path):
    with open(str(path)) as handle:
        return handle.read()


# ------------------------------------------------------------------ scanning
@pytest.mark.parametrize("line, code", [
    ("Key=value # comment", "Key=value "),
    ("Key=a\\#b # c", "Key=a\\#b "),
    ("Key=a\\\\#b", "Key=a\\\\"),
    ("# only", ""),
    ("no comment", "no comment"),
])
def test_code_part(line, code):
    assert sc.code_part(line) == code


@pytest.mark.parametrize("code, expected", [
    ("TaskPlugin=a \\", ("TaskPlugin=a ", True)),
    ("TaskPlugin=a \\   ", ("TaskPlugin=a ", True)),
    ("Key=a\\\\", ("Key=a\\\\", False)),
    ("Key=a\\\\\\", ("Key=a\\\\", True)),
    ("Key=a", ("Key=a", False)),
])
def test_split_continuation(code, expected):
    assert sc.split_continuation(code) == expected


def test_scan_pairs_positions_and_quotes():
    text = 'A=1  b_c = "x y"   D+=z'
    pairs = sc.scan_pairs(text)
    assert [(p.key, p.op, p.value, p.quoted) for p in pairs] == [
        ("A", "", "1", False), ("b_c", "", "x y", True), ("D", "+", "z", False)]
    assert text[pairs[1].value_start:pairs[1].end] == '"x y"'
    assert text[pairs[0].start:pairs[0].end] == "A=1"


@pytest.mark.parametrize("text", ["just words", "Key=", 'Key="open', "=value", 'K="a"b'])
def test_scan_pairs_rejects_non_pairs(text):
    assert sc.scan_pairs(text) is None


@pytest.mark.parametrize("first, second, same", [
    ("Contain", "contain", True),
    ("task/cgroup", "cgroup", True),
    ("cgroup", "TASK/CGROUP", True),
    ("task/cgroup", "proctrack/cgroup", False),
    ("task/cgroup", "task/affinity", False),
    ("Alloc", "Contain", False),
])
def test_same_item(first, second, same):
    assert sc.same_item(first, second) is same


def test_format_value():
    assert sc.format_value("proctrack/cgroup") == "proctrack/cgroup"
    assert sc.format_value("a b") == '"a b"'
    assert sc.format_value("") == '""'
    with pytest.raises(sc.SlurmConfError):
        sc.format_value('a"b')


# ------------------------------------------------------------------ reading
def test_reads_include_tree_in_slurm_order(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    names = [os.path.relpath(p, str(cluster)) for p in conf.order]
    assert names == ["slurm.conf", "slurm.conf.d/10-prolog.conf",
                     "slurm.conf.d/20-accounting.conf", "alpha-nodes.conf"]
    # keys are case-insensitive, values come from whichever file defines them
    assert conf.get("ProctrackType") == "proctrack/linuxproc"
    assert conf.get("prologflags") == "X11,Alloc"
    assert conf.effective("PrologFlags").conf_file.path.endswith("10-prolog.conf")
    assert conf.get("SchedulerParameters") == "bf_continue bf_max_job_test=500"
    assert conf.get("KillWait") == "30"
    # the continued TaskPlugin line is one logical line; NodeName lines are records
    assert conf.get("TaskPlugin") == "task/affinity"
    assert len(conf.definitions("TaskPlugin")) == 1
    assert conf.get("CPUs") is None


def test_without_includes_only_main_file(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"), follow_includes=False)
    assert conf.order == [str(cluster / "slurm.conf")]
    assert conf.get("PrologFlags") is None


def test_missing_include_is_an_error(tmp_path):
    path = write(tmp_path / "slurm.conf", "ClusterName=x\nInclude nothere.conf\n")
    with pytest.raises(sc.SlurmConfError, match="nothere.conf"):
        sc.SlurmConf(path)


def test_include_loop_is_an_error(tmp_path):
    write(tmp_path / "b.conf", "Include slurm.conf\n")
    path = write(tmp_path / "slurm.conf", "Include b.conf\n")
    with pytest.raises(sc.SlurmConfError, match="loop"):
        sc.SlurmConf(path)


def test_percent_c_needs_clustername(tmp_path):
    path = write(tmp_path / "slurm.conf", "Include %c.conf\nClusterName=x\n")
    with pytest.raises(sc.SlurmConfError, match="ClusterName"):
        sc.SlurmConf(path)


def test_relative_include_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    write(tmp_path / "a" / "b" / "deep.conf", "PrologFlags=Alloc\n")
    write(tmp_path / "a" / "inc.conf", "Include b/deep.conf\n")
    path = write(tmp_path / "slurm.conf", "Include a/inc.conf\n")
    conf = sc.SlurmConf(path)
    assert conf.get("PrologFlags") == "Alloc"


def test_glob_without_match_is_a_warning(tmp_path):
    path = write(tmp_path / "slurm.conf", "Include conf.d/*.conf\nPrologFlags=Alloc\n")
    conf = sc.SlurmConf(path)
    assert conf.get("PrologFlags") == "Alloc"
    assert any("matches no file" in w for w in conf.warnings)


def test_glob_include_is_followed_with_a_warning(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    assert conf.get("PrologFlags") == "X11,Alloc"
    assert any("does not expand globs" in w for w in conf.warnings)


# ------------------------------------------------------------------ editing
def test_merge_into_included_file_keeps_comment_and_order(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.merge("PrologFlags", ["Contain"])
    assert result == {"before": "X11,Alloc", "after": "X11,Alloc,Contain",
                      "file": str(cluster / "slurm.conf.d" / "10-prolog.conf"), "action": "changed"}
    changed = conf.changed()
    assert [f.path for f in changed] == [result["file"]]
    assert changed[0].text == (
        "# Prolog settings, managed by the site team\n"
        "Prolog=/etc/slurm/prolog.sh\n"
        "PROLOGFLAGS=X11,Alloc,Contain # X11 forwarding for visualisation users\n")


def test_merge_is_case_insensitive_and_never_duplicates(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    assert conf.merge("prologflags", ["x11", "ALLOC"])["action"] == "unchanged"
    assert conf.merge("TaskPlugin", ["affinity"])["action"] == "unchanged"
    assert conf.changed() == []
    result = conf.merge("PrologFlags", ["contain", "Contain", "CONTAIN"])
    assert result["after"] == "X11,Alloc,contain"


def test_merge_into_continued_line_keeps_the_continuation(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.merge("TaskPlugin", ["task/cgroup"])
    assert result["after"] == "task/affinity,task/cgroup"
    text = conf.main.text
    assert "TaskPlugin=task/affinity,task/cgroup \\\n           # the continuation line above ends here\n" in text


def test_set_keeps_key_spelling_and_trailing_comment(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.set("ProctrackType", "proctrack/cgroup")
    assert result["action"] == "changed" and result["before"] == "proctrack/linuxproc"
    assert ("proctracktype=proctrack/cgroup   # ProctrackType spelled in lower case on purpose\n"
            in conf.main.text)
    before = read(cluster / "slurm.conf").splitlines()
    after = conf.main.text.splitlines()
    assert len(before) == len(after)
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [8]


def test_set_one_pair_of_a_multi_pair_line(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    conf.set("killwait", "60")
    assert "InactiveLimit=0 KillWait=60 MinJobAge=300\n" in conf.main.text


def test_set_quoted_value_stays_quoted(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    conf.set("SchedulerParameters", "bf_continue")
    assert 'SchedulerParameters="bf_continue"   # quoted value with blanks\n' in conf.main.text
    conf.set("SchedulerParameters", "a b")
    assert 'SchedulerParameters="a b"   # quoted value with blanks\n' in conf.main.text


def test_new_key_is_appended_to_the_main_file(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.merge("SlurmctldParameters", ["enable_configless"])
    assert result == {"before": None, "after": "enable_configless",
                      "file": str(cluster / "slurm.conf"), "action": "added"}
    assert conf.main.text == read(cluster / "slurm.conf") + "SlurmctldParameters=enable_configless\n"
    # and it is found at once
    assert conf.get("slurmctldparameters") == "enable_configless"


def test_append_to_file_without_final_newline(tmp_path):
    path = write(tmp_path / "slurm.conf", "ClusterName=x")
    conf = sc.SlurmConf(path)
    conf.set("ProctrackType", "proctrack/cgroup")
    assert conf.main.text == "ClusterName=x\nProctrackType=proctrack/cgroup\n"


def test_crlf_lines_are_kept(tmp_path):
    path = str(tmp_path / "slurm.conf")
    with open(path, "wb") as handle:
        handle.write(b"ClusterName=x\r\nPrologFlags=Alloc\r\n")
    conf = sc.SlurmConf(path)
    assert conf.get("PrologFlags") == "Alloc"
    conf.merge("PrologFlags", ["Contain"])
    assert conf.main.text == "ClusterName=x\r\nPrologFlags=Alloc,Contain\r\n"


def test_last_definition_wins_and_is_edited(tmp_path):
    path = write(tmp_path / "slurm.conf", "PrologFlags=Alloc\n# later\nPrologFlags=X11\n")
    conf = sc.SlurmConf(path)
    assert conf.get("PrologFlags") == "X11"
    conf.merge("PrologFlags", ["Contain"])
    assert conf.main.text == "PrologFlags=Alloc\n# later\nPrologFlags=X11,Contain\n"
    assert any("defined 2 times" in w for w in conf.warnings)


def test_node_and_partition_lines_are_never_edited(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    conf.merge("TaskPlugin", ["task/cgroup"])
    assert not any(f.path.endswith("alpha-nodes.conf") for f in conf.changed())
    with pytest.raises(sc.SlurmConfError):
        conf.set("NodeName", "x")
    with pytest.raises(sc.SlurmConfError):
        conf.set("PartitionName", "x")


def test_remove_key_alone_on_its_line(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.remove("PrologFlags")
    assert result["action"] == "removed" and result["before"] == "X11,Alloc"
    prolog = conf.files[str(cluster / "slurm.conf.d" / "10-prolog.conf")]
    assert prolog.text == "# Prolog settings, managed by the site team\nProlog=/etc/slurm/prolog.sh\n"
    assert conf.get("PrologFlags") is None


@pytest.mark.parametrize("key, line", [
    ("InactiveLimit", "KillWait=30 MinJobAge=300"),
    ("KillWait", "InactiveLimit=0 MinJobAge=300"),
    ("MinJobAge", "InactiveLimit=0 KillWait=30"),
])
def test_remove_one_pair_of_several(cluster, key, line):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    conf.remove(key)
    assert "\n%s\n" % line in conf.main.text


def test_remove_items(cluster):
    conf = sc.SlurmConf(str(cluster / "slurm.conf"))
    result = conf.remove_items("PrologFlags", ["x11"])
    assert result["after"] == "Alloc"
    assert conf.remove_items("PrologFlags", ["Contain"])["action"] == "unchanged"
    assert conf.remove_items("PrologFlags", ["alloc"])["action"] == "removed"
    assert conf.get("PrologFlags") is None


def apply_prerequisites(path):
    """The role's three edits, made by the editor and written to disk."""
    conf = sc.SlurmConf(path)
    conf.merge("PrologFlags", ["Contain"])
    conf.merge("TaskPlugin", ["task/cgroup"])
    conf.set("ProctrackType", "proctrack/cgroup")
    for conf_file in conf.changed():
        with open(conf_file.path, "w") as handle:
            handle.write(conf_file.text)


def test_edit_then_reread_from_disk_round_trips(cluster):
    apply_prerequisites(str(cluster / "slurm.conf"))
    again = sc.SlurmConf(str(cluster / "slurm.conf"))
    assert again.get("PrologFlags") == "X11,Alloc,Contain"
    assert again.get("TaskPlugin") == "task/affinity,task/cgroup"
    assert again.get("ProctrackType") == "proctrack/cgroup"
    assert again.merge("PrologFlags", ["Contain"])["action"] == "unchanged"
    assert again.changed() == []


def test_node_side_reader_agrees_with_the_edit(cluster):
    """The PAM module's own reader (roles/adopt_module/files) sees the edit."""
    slurmconf = pytest.importorskip("slurm_adopt.slurmconf")
    # Slurm (and that reader, like Slurm) expands no glob in Include: name the files
    main = cluster / "slurm.conf"
    parts = sorted(p.name for p in (cluster / "slurm.conf.d").glob("*.conf"))
    main.write_text(read(main).replace(
        "Include slurm.conf.d/*.conf",
        "\n".join("Include slurm.conf.d/%s" % name for name in parts)))
    apply_prerequisites(str(cluster / "slurm.conf"))
    node = slurmconf.SlurmConfig.load(str(cluster / "slurm.conf"), with_cgroup=False)
    assert node.get("PrologFlags") == "X11,Alloc,Contain"
    assert node.get("TaskPlugin") == "task/affinity,task/cgroup"
    assert node.get("ProctrackType") == "proctrack/cgroup"
    assert node.get("SchedulerParameters") == "bf_continue bf_max_job_test=500"


def test_operator_assignment_is_not_edited(tmp_path):
    path = write(tmp_path / "slurm.conf", "PrologFlags+=Alloc\n")
    conf = sc.SlurmConf(path)
    with pytest.raises(sc.SlurmConfError, match="operator"):
        conf.merge("PrologFlags", ["Contain"])


def test_merge_into_quoted_list(tmp_path):
    path = write(tmp_path / "slurm.conf", 'PrologFlags="Alloc"\n')
    conf = sc.SlurmConf(path)
    conf.merge("PrologFlags", ["Contain"])
    assert conf.main.text == 'PrologFlags="Alloc,Contain"\n'
