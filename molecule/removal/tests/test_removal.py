# SPDX-License-Identifier: GPL-3.0-or-later
"""After converge and a run with state=absent, the node is as prepare left it.

prepare (molecule/_shared/prepare.yml) wrote, before converge, into
/root/.molecule: `paths` (everything the roles may touch), `before.manifest`
(type, mode, owner, sha256 or link target of every object below them),
`before.tar` (their content) and `before.units` (enabled/active state of
logind, ssh, munge and the Slurm daemons).
"""

import difflib
import pathlib
import shlex
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "_shared" / "tests"))

# pylint: disable=wrong-import-position
from nodeutil import DENY_MESSAGE, molecule_hosts, read_remote, ssh  # noqa: E402
from pamstack import PamTree  # noqa: E402

testinfra_hosts = molecule_hosts()

STATE = "/root/.molecule"
# adopt_slurm_conf has no state=absent: PrologFlags=Contain and the cgroup
# plugins are prerequisites a site keeps, so /etc/slurm is not compared.
NOT_REVERTED = ("/etc/slurm",)


# The roles' own state (originals kept by adopt_pam, ...): checked separately,
# so that a leftover there is told apart from a changed configuration file.
STATE_DIRS = ("/var/lib/slurm-adopt",)


def wanted(path, state):
    """Is path part of the comparison (state: the roles' state dirs or the rest)?"""
    if path.startswith(NOT_REVERTED):
        return False
    return path.startswith(STATE_DIRS) == state


def manifest_now(host, state=False):
    """The manifest of the snapshot paths as they are now."""
    paths = [p for p in host.file(STATE + "/paths").content_string.split() if wanted(p, state)]
    out = host.check_output(
        "python3 %s/manifest.py %s" % (STATE, " ".join(shlex.quote(p) for p in paths))
    )
    return out.splitlines()


def manifest_before(host, state=False):
    lines = host.file(STATE + "/before.manifest").content_string.splitlines()
    return [line for line in lines if wanted(line.split()[0], state)]


def content_diff(host, path):
    """Unified diff of one file between the snapshot tarball and now."""
    before = host.run("tar -xOf %s/before.tar %s" % (STATE, shlex.quote(path.lstrip("/"))))
    now = host.run("cat %s" % shlex.quote(path))
    return "".join(
        difflib.unified_diff(
            before.stdout.splitlines(True),
            now.stdout.splitlines(True),
            "before:" + path,
            "now:" + path,
        )
    )


def test_converge_had_changed_the_node(host):
    """Without this, the byte-for-byte comparison below would also pass if
    converge had done nothing (remove.yml kept what converge left)."""
    converged = host.file(STATE + "/converged.pam").content_string
    assert "pam_slurm_adopt" in converged, converged
    assert "pam_slurm_adopt" not in host.file("/etc/pam.d/sshd").content_string


def test_every_touched_file_is_back_byte_for_byte(host):
    """/etc/pam.d, access.conf, sshd, logind mask, pam-auth-update state, module dir."""
    before = manifest_before(host)
    now = manifest_now(host)
    assert len(before) > 50, "suspiciously small snapshot: %r" % before
    if before == now:
        return
    report = ["manifest differs (before -> now):"]
    report.extend(difflib.unified_diff(before, now, "before", "now", lineterm="", n=0))
    changed = {line.split()[0] for line in set(before) ^ set(now)}
    for path in sorted(changed):
        if host.file(path).is_file:
            report.append(content_diff(host, path))
    raise AssertionError("\n".join(report))


def test_no_state_left_behind(host):
    """What the roles kept for themselves (/var/lib/slurm-adopt) is gone again."""
    before = manifest_before(host, state=True)
    now = manifest_now(host, state=True)
    assert now == before, "\n".join(difflib.unified_diff(before, now, "before", "now", lineterm="", n=0))


def test_units_are_back(host):
    before = host.file(STATE + "/before.units").content_string.splitlines()
    now = [
        "%s %s %s"
        % (
            unit,
            host.run("systemctl is-enabled %s" % unit).stdout.strip(),
            host.run("systemctl is-active %s" % unit).stdout.strip(),
        )
        for unit in [line.split()[0] for line in before]
    ]
    assert now == before


def test_no_adopt_rule_left_and_pam_systemd_back(host):
    tree = PamTree(read_remote(host))
    _files, stacks = tree.reachable("sshd")
    assert not [r for r in stacks["account"] if r.mentions("pam_slurm_adopt")]
    assert [r for r in stacks["session"] if r.module_name == "pam_systemd.so"]


def test_user_without_job_logs_in_again(host):
    """bob, denied while the module was in place, gets in after removal."""
    out = ssh(host, "bob", "id -un")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "bob"
    assert DENY_MESSAGE not in out.stderr
