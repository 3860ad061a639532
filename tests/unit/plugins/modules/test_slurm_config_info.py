# SPDX-License-Identifier: GPL-3.0-or-later
"""plugins/modules/slurm_config_info.py: parsing real `scontrol show config` output."""

import json
import os
import subprocess

import pytest

from ansible_collections.hpc.slurm_adopt.plugins.modules import slurm_config_info as module

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "slurm_conf")
LAB_CONF = "/var/lib/slurm-adopt-lab/host/etc/slurm.conf"

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


def run(capsys, **args):
    args = dict(args, _ansible_check_mode=True, _ansible_tmpdir=None,
                _ansible_remote_tmp="/tmp", _ansible_keep_remote_files=False)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc_exit"] = exc.value.code
    return result


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.mark.parametrize("name, version", [("scontrol_show_config_22.05.txt", "22.05"),
                                           ("scontrol_show_config_24.11.txt", "24.11")])
def test_parse_real_outputs(name, version):
    config, sections, controllers, as_of = module.parse_show_config(fixture_text(name))
    assert config["PrologFlags"] == "Alloc,Contain"
    assert config["ProctrackType"] == "proctrack/cgroup"
    assert config["TaskPlugin"] == "task/cgroup,task/affinity"
    assert config["SLURM_VERSION"].startswith(version)
    # a value that itself contains '=' stays whole
    assert config["SchedulerParameters"] == "batch_sched_delay=0"
    assert config["AccountingStorageBackupHost"] == "(null)"
    # the cgroup.conf section is separate and does not leak into config
    assert sections["Cgroup Support Configuration"]["ConstrainRAMSpace"] == "yes"
    assert "ConstrainRAMSpace" not in config
    assert controllers == [{"role": "primary", "host": "vm", "state": "UP"}]
    assert as_of.startswith("2026-")
    if version == "24.11":
        assert "MPI Plugins Configuration" in sections


def test_module_with_fake_scontrol(capsys, tmp_path):
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = 'show config' ] || exit 9\n"
                    "[ \"$SLURM_CONF\" = /x/slurm.conf ] || exit 8\ncat %s\n"
                    % os.path.join(FIXTURES, "scontrol_show_config_22.05.txt"))
    fake.chmod(0o755)
    result = run(capsys, scontrol=str(fake), slurm_conf="/x/slurm.conf")
    assert result["rc_exit"] == 0 and result["changed"] is False
    assert result["config"]["PrologFlags"] == "Alloc,Contain"
    assert result["config_lower"]["prologflags"] == "Alloc,Contain"


def test_module_reports_scontrol_failure(capsys, tmp_path):
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\necho 'slurm_load_ctl_conf error: Unable to contact slurm controller' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = run(capsys, scontrol=str(fake))
    assert result["failed"] is True
    assert "Unable to contact slurm controller" in result["msg"]


def lab_up():
    if not os.path.exists(LAB_CONF):
        return False
    proc = subprocess.run(["scontrol", "ping"], env=dict(os.environ, SLURM_CONF=LAB_CONF),
                          capture_output=True, timeout=30, check=False)
    return proc.returncode == 0 and b"UP" in proc.stdout


@pytest.mark.node
def test_real_lab_controller(capsys):
    """Read-only: the running 22.05 lab controller's configuration."""
    if not lab_up():
        if os.environ.get("ADOPT_LAB_REQUIRED"):
            pytest.fail("the host lab is not up")
        pytest.skip("the host lab is not up")
    result = run(capsys, slurm_conf=LAB_CONF)
    assert result["rc_exit"] == 0, result
    config = result["config"]
    assert "contain" in config["PrologFlags"].lower().split(",")
    assert config["ProctrackType"] == "proctrack/cgroup"
    assert config["SLURM_CONF"] == LAB_CONF
    assert result["sections"]["Cgroup Support Configuration"]["CgroupMountpoint"] == "/sys/fs/cgroup"
