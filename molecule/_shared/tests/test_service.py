# SPDX-License-Identifier: GPL-3.0-or-later
"""The service interface (docs/service.md) under the container's real systemd,
on the instances whose inventory asks for it (adopt_module_interface:
service): the units enabled, the socket listening, the client the role built
from this collection's source with the checksum it recorded, and logins
served by the socket-activated service, then by the client's fallback child
with the socket stopped.  (test_adopt.py and test_job_end.py run on these
instances too: adoption, denial, the admin, scancel, the drift check.)"""

import hashlib
import json
import re

from nodeutil import DENY_MESSAGE, MODULE_SRC, interface_of, molecule_hosts, ssh

testinfra_hosts = [h for h in molecule_hosts() if interface_of(h.split("://", 1)[1]) == "service"]

MODULE_DIR = "/usr/lib/slurm-adopt"
CLIENT = "/usr/lib/x86_64-linux-gnu/security/pam_slurm_adopt_client.so"
SOCKET = "/run/slurm-adopt/adopt.sock"
FALLBACK = "adoption service %s did not answer; running" % SOCKET


def test_socket_enabled_and_listening_under_systemd(host):
    assert host.run("systemctl is-enabled slurm-adopt.socket").stdout.strip() == "enabled"
    assert host.run("systemctl is-active slurm-adopt.socket").stdout.strip() == "active"
    assert host.check_output("stat -c '%%F %%U:%%G %%a' %s" % SOCKET) == "socket root:root 600"
    assert re.search(r"^Listen=%s \(SequentialPacket\)$" % re.escape(SOCKET),
                     host.check_output("systemctl show -p Listen slurm-adopt.socket"), re.M)


def test_client_is_built_from_the_collections_source_as_recorded(host):
    """The build record names this collection's client source and build
    script (their sha256 and the paths compiled in), and the checksum of the
    module installed: the installed client matches it."""
    record = json.loads(host.file(MODULE_DIR + "/client.build-id").content_string)
    sources = [hashlib.sha256((MODULE_SRC / "client" / name).read_bytes()).hexdigest()
               for name in ("pam_slurm_adopt_client.c", "build.sh")]
    argv = [CLIENT, SOCKET, "/usr/bin/python3", MODULE_DIR + "/slurm_adopt_service.py"]
    assert record["inputs"] == hashlib.sha256(" ".join(sources + argv).encode()).hexdigest(), record
    assert record["path"] == CLIENT, record
    client = host.file(CLIENT)
    assert (client.user, client.group, client.mode) == ("root", "root", 0o644)
    assert host.check_output("sha256sum %s" % CLIENT).split()[0] == record["output"], record


def test_a_login_starts_the_service_and_it_answers(host, alice_job):
    host.check_output("systemctl stop slurm-adopt.service")
    since = host.check_output("date +%s")
    out = ssh(host, "alice", "echo JOB=$SLURM_JOB_ID")
    assert out.rc == 0 and "JOB=%d" % alice_job.jobid in out.stdout, out.stderr
    assert host.run("systemctl is-active slurm-adopt.service").stdout.strip() == "active"
    assert FALLBACK not in host.check_output("journalctl -q -o cat --no-pager --since @%s" % since)


def test_socket_stopped_the_fallback_child_adopts_and_denies(host, alice_job):
    host.check_output("systemctl stop slurm-adopt.socket slurm-adopt.service")
    try:
        since = host.check_output("date +%s")
        out = ssh(host, "alice", "echo JOB=$SLURM_JOB_ID; cat /proc/self/cgroup")
        assert out.rc == 0 and "JOB=%d" % alice_job.jobid in out.stdout, out.stderr
        assert alice_job.extern_cgroup in out.stdout, out.stdout
        out = ssh(host, "bob", "true")
        assert out.rc != 0 and DENY_MESSAGE in out.stderr, out.stderr
        journal = host.check_output("journalctl -q -o cat --no-pager --since @%s" % since)
        assert len(re.findall(FALLBACK, journal)) == 2, journal
    finally:
        host.check_output("systemctl start slurm-adopt.socket")
    assert host.run("systemctl is-active slurm-adopt.socket").stdout.strip() == "active"
