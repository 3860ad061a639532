# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm.conf reading: lookup order, Include, hostlists, %n/%h, errors."""


import pytest

from slurm_adopt import constants as C
from slurm_adopt import slurmconf
from slurm_adopt.slurmconf import (SlurmConfig, expand_hostlist, find_slurm_conf, guess_nodename,
                                   legacy_nodename)


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("expr,names", [
    ("node1", ["node1"]),
    ("n[1-3]", ["n1", "n2", "n3"]),
    ("n[08-10],login", ["n08", "n09", "n10", "login"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("gpu[1,3,5-6]", ["gpu1", "gpu3", "gpu5", "gpu6"]),
])
def test_expand_hostlist(expr, names):
    assert expand_hostlist(expr) == names


@pytest.mark.parametrize("expr", ["n[1-3", "n[a-b]", "n[5-1]"])
def test_bad_hostlist_is_a_config_error(expr):
    with pytest.raises(C.ConfigError):
        expand_hostlist(expr)


def test_keys_are_case_insensitive_comments_and_continuations(tmp_path):
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", (
        "# a comment\n"
        "slurmdSPOOLdir=/var/spool/x/%n  # trailing comment\n"
        "SlurmdPort=7001\n"
        "NodeName=c[1-2] NodeHostname=host[1-2] \\\n"
        "   CPUs=4\n"
        "AuthInfo=socket=/run/m.sock,ttl=60\n"
        "CommunicationParameters=block_zero_hash\n")))
    assert conf.slurmd_port == 7001
    assert conf.spool_dir("c1") == "/var/spool/x/c1"
    assert conf.nodes == [("c1", "host1"), ("c2", "host2")]
    assert conf.munge_socket == "/run/m.sock"
    assert conf.comm_param("block_zero_hash")
    assert conf.message_timeout == C.DEFAULT_MESSAGE_TIMEOUT


def test_include_relative_and_last_value_wins(tmp_path):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "nodes.conf", "NodeName=n[1-2]\nSlurmdSpoolDir=/spool/%h\n")
    write(tmp_path / "extra.conf", "SlurmdPort=6999\n")
    path = write(tmp_path / "slurm.conf",
                 "SlurmdPort=1\nInclude extra.conf\ninclude conf.d/nodes.conf\n")
    conf = SlurmConfig.load(path)
    assert conf.slurmd_port == 6999
    assert conf.nodes == [("n1", "n1"), ("n2", "n2")]
    assert conf.spool_dir("n2") == "/spool/n2"
    assert len(conf.files) == 3


def test_include_percent_c_is_the_lower_cased_cluster_name(tmp_path):
    write(tmp_path / "big.conf", "SlurmdPort=7001\n")
    path = write(tmp_path / "slurm.conf", "ClusterName=BIG\nInclude %c.conf\n")
    assert SlurmConfig.load(path).slurmd_port == 7001


def test_include_glob_is_a_config_error_as_in_slurm(tmp_path):
    """Slurm expands no glob in Include (22.05 opens the pattern literally,
    24.11+ refuses it): the configuration does not load."""
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "a.conf", "SlurmdPort=7002\n")
    path = write(tmp_path / "slurm.conf", "Include conf.d/*.conf\n")
    with pytest.raises(C.ConfigError) as err:
        SlurmConfig.load(path)
    assert "does not expand glob" in str(err.value)


def test_percent_h_is_the_nodes_hostname(tmp_path):
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf",
                                  "NodeName=a NodeHostname=real-a\nSlurmdSpoolDir=/s/%h/%n\n"))
    assert conf.spool_dir("a") == "/s/real-a/a"


def test_nodename_default_line_is_not_a_node(tmp_path):
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf",
                                  "NodeName=DEFAULT CPUs=2\nNodeName=x\n"))
    assert conf.nodes == [("x", "x")]


def test_default_spool_dir(tmp_path):
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "NodeName=x\n"))
    assert conf.spool_dir("x") == "/var/spool/slurmd"


@pytest.mark.parametrize("text,fragment", [
    ("NodeName=x\nthis is not a key value line\n", "cannot parse"),
    ("Include /nonexistent/file.conf\n", "cannot read /nonexistent/file.conf"),
    ("Include /nonexistent/*.conf\n", "does not expand glob"),
    ("Include %c.conf\n", "no ClusterName is set before it"),
    ("SlurmdPort=abc\n", "not a number"),
    ('AuthInfo="unterminated\n', "unterminated quote"),
])
def test_broken_config_raises_a_clear_error(tmp_path, text, fragment):
    path = write(tmp_path / "slurm.conf", text)
    with pytest.raises(C.ConfigError) as err:
        conf = SlurmConfig.load(path)
        conf.slurmd_port
    assert fragment in str(err.value)


def test_unreadable_config(tmp_path):
    with pytest.raises(C.ConfigError) as err:
        SlurmConfig.load(str(tmp_path / "missing.conf"))
    assert "cannot read" in str(err.value)


def test_cgroup_conf_next_to_slurm_conf(tmp_path):
    write(tmp_path / "cgroup.conf", "CgroupPlugin=cgroup/v1\nConstrainRAMSpace=yes\n"
                                    "CgroupMountpoint=/cg\n")
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "NodeName=x\n"))
    assert conf.cgroup["cgroupplugin"] == "cgroup/v1"
    assert conf.cgroup_flag("ConstrainRAMSpace") and not conf.cgroup_flag("ConstrainCores")
    assert conf.cgroup_mountpoint == "/cg"


def test_lookup_order(tmp_path, monkeypatch):
    default = tmp_path / "etc.slurm.conf"
    configless = tmp_path / "run.slurm.conf"
    monkeypatch.setattr(slurmconf, "DEFAULT_SLURM_CONF", str(default))
    monkeypatch.setattr(slurmconf, "CONFIGLESS_SLURM_CONF", str(configless))
    with pytest.raises(C.ConfigError):
        find_slurm_conf({})
    configless.write_text("")
    assert find_slurm_conf({}) == str(configless)
    default.write_text("")
    assert find_slurm_conf({}) == str(default)
    assert find_slurm_conf({"SLURM_CONF": "/elsewhere.conf"}) == "/elsewhere.conf"


def test_guess_nodename(tmp_path, monkeypatch):
    monkeypatch.setattr(slurmconf.socket, "gethostname", lambda: "cn17.cluster.example")
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf",
                                  "NodeName=node17 NodeHostname=cn17\nNodeName=node1\n"))
    assert guess_nodename(conf, {}) == "node17"
    assert guess_nodename(conf, {"SLURMD_NODENAME": "override"}) == "override"


def test_guess_nodename_falls_back_to_localhost(tmp_path, monkeypatch):
    monkeypatch.setattr(slurmconf.socket, "gethostname", lambda: "unknown-host-xyz")
    monkeypatch.setattr(slurmconf.socket, "getaddrinfo", lambda *a: [])
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf",
                                  "NodeName=devnode NodeHostname=localhost\n"))
    assert guess_nodename(conf, {}) == "devnode"
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "NodeName=other\n"))
    assert legacy_nodename(conf) is None                   # 22.05: no name at all
    assert guess_nodename(conf, {}) == "unknown-host-xyz"  # 23.11+: the raw host name


ENCODING_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from slurm_adopt.slurmconf import SlurmConfig
conf = SlurmConfig.load(sys.argv[2])
print(json.dumps({"encoding": sys.getfilesystemencoding(), "port": conf.slurmd_port,
                  "spool": conf.spool_dir("n1"), "cgroup": conf.cgroup.get("cgroupplugin"),
                  "nodes": conf.nodes}))
"""


def test_non_ascii_bytes_in_every_config_file_under_a_c_locale(tmp_path):
    """Item 1: sshd often runs without LANG, and pam_python's interpreter
    then decodes with ASCII (no PEP 538/540 there). A comment such as
    "# Zürich", an Include and cgroup.conf with non-ASCII bytes must still
    load; a non-ASCII path is read back as the same bytes."""
    import json
    import os
    import subprocess
    import sys
    odd = tmp_path / "Z\u00fcrich"
    odd.mkdir()
    (odd / "nodes.conf").write_bytes("# n\u00f6des \xff\nNodeName=n1\n".encode("utf-8", "surrogateescape"))
    (tmp_path / "cgroup.conf").write_bytes(b"# \xc3\xa9t\xe9\nCgroupPlugin=cgroup/v1\n")
    path = tmp_path / "slurm.conf"
    path.write_bytes("# Z\u00fcrich \u2013 site config\nSlurmdPort=7001\n".encode()
                     + b"SlurmdSpoolDir=/var/spool/sp\xc3\xa4l/%n\n"
                     + ("Include %s/nodes.conf\n" % odd).encode())
    here = os.path.dirname(os.path.dirname(slurmconf.__file__))
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0"}
    p = subprocess.run([sys.executable, "-X", "utf8=0", "-c", ENCODING_PROBE, here, str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=30,
                       check=False)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout.decode())
    assert out["encoding"] == "ascii"          # the condition of the bug is really there
    assert out["port"] == 7001 and out["cgroup"] == "cgroup/v1"
    assert out["nodes"] == [["n1", "n1"]]
    assert out["spool"].encode("ascii", "surrogateescape") == b"/var/spool/sp\xc3\xa4l/n1"


def test_nested_relative_include_24_11_style(tmp_path):
    """Item 11: 24.11+ resolves a relative Include inside an included file
    against slurm.conf's directory; 22.05 against the including file's. The
    including file's directory is tried first, then slurm.conf's."""
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "a.conf", "Include b.conf\n")
    write(tmp_path / "b.conf", "SlurmdPort=7005\n")               # only where 24.11 looks
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "Include sub/a.conf\n"))
    assert conf.slurmd_port == 7005
    write(tmp_path / "sub" / "b.conf", "SlurmdPort=7006\n")      # where 22.05 looks
    assert SlurmConfig.load(str(tmp_path / "slurm.conf")).slurmd_port == 7006


def test_cgroup_conf_is_read_only_when_used(tmp_path):
    """Item 11: 26.05 never reads cgroup.conf; here it is read on first use
    (the "newest" rule up to 25.11), so a broken one breaks only that path."""
    write(tmp_path / "cgroup.conf", "this is broken\n")
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "NodeName=x\n"))
    assert conf.slurmd_port == 6818
    with pytest.raises(C.ConfigError):
        conf.cgroup
    (tmp_path / "cgroup.conf").unlink()
    assert SlurmConfig.load(str(tmp_path / "slurm.conf")).cgroup == {}


def test_auth_and_tls_settings(tmp_path):
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf", "NodeName=x\n"))
    assert (conf.auth_type, conf.tls_type) == ("auth/munge", "tls/none")
    assert conf.slurm_users() == ["root", "root"]
    conf = SlurmConfig.load(write(tmp_path / "slurm.conf",
                                  "AuthType=auth/slurm\nTLSType=tls/s2n\nSlurmUser=slurm\n"))
    assert (conf.auth_type, conf.tls_type) == ("auth/slurm", "tls/s2n")
    assert conf.slurm_users() == ["slurm", "root"]
