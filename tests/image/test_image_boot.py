# SPDX-License-Identifier: GPL-3.0-or-later
"""Image mode, booted (issue 12, part 1, test steps 3 and 4): the image root of
lab/image/build.sh with the roles applied in image mode boots as a systemd
container (podman --rootfs) in the fleet lab (lab/fleet), as compute node
node3 next to the lab's controller, and real ssh logins decide:

  - a user with a job on node3 gets in and lands in the job (its cgroup);
  - a user without a job is denied by pam_slurm_adopt;
  - the admin (group fleetwheel) gets in without a job;
  - the drift check installed in the image is green on the booted node: its
    first-boot checks (scontrol show config, real logins through the live
    stack and the node's libpam) have passed, logind is masked and inactive.

Needs root, podman and the fleet lab's image; brings the lab up (up.sh,
idempotent) and leaves it as it found it: node3 removed, the shared slurm.conf
restored, slurmctld and the lab's slurmd restarted, the lab taken down again
when it was not up before.  Run it under the
machine's podman lock:

    flock /run/lock/saf-podman.lock .venv/bin/pytest -v tests/image/test_image_boot.py

It fails (never skips) when podman or the lab cannot be used."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from imagelab import REPO, copy_image, play

FLEET = os.path.join(REPO, 'lab', 'fleet')
STATE = os.environ.get('FLEET_STATE', os.path.join(FLEET, '.state'))
NODE = 'saf-node3'
HOST = 'node3'
NET = 'saf-net'
SLURM_VOLUME = 'saf-slurm-etc'
CHECK = '/usr/lib/slurm-adopt/slurm_adopt_check.py'


def sh(*argv, **kwargs):
    kwargs.setdefault('timeout', 300)
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)


def pexec(container, *argv, **kwargs):
    return sh('podman', 'exec', container, *argv, **kwargs)


def wait_for(seconds, func):
    deadline = time.time() + seconds
    while True:
        if func():
            return True
        if time.time() > deadline:
            return False
        time.sleep(1)


# The lab's slurm.conf with node3 added and the prerequisites pam_slurm_adopt
# needs (site.yml would set them on the controller: here the booted image is
# the subject, not the rollout).
def conf_with_node3(text):
    out = []
    for line in text.splitlines():
        if line.startswith('NodeName=node[1-2]'):
            line = line.replace('node[1-2]', 'node[1-3]')
        elif line.startswith('PartitionName=batch'):
            line = line.replace('Nodes=node[1-2]', 'Nodes=node[1-3]')
        elif line.startswith(('TaskPlugin=', 'PrologFlags=')):
            continue
        out.append(line)
    out += ['TaskPlugin=task/cgroup,task/affinity', 'PrologFlags=Contain']
    return '\n'.join(out) + '\n'


@pytest.fixture(scope='module')
def lab():
    if shutil.which('podman') is None:
        pytest.fail('podman is missing: the boot test needs it')
    was_up = sh('podman', 'inspect', '-f', '{{.State.Running}}', 'saf-ctl').stdout.strip() == 'true'
    up = sh('bash', os.path.join(FLEET, 'up.sh'), timeout=1800)
    assert up.returncode == 0, 'lab/fleet/up.sh failed:\n' + up.stderr[-3000:]
    original = pexec('saf-ctl', 'cat', '/etc/slurm/slurm.conf').stdout
    assert 'NodeName=node[1-2]' in original
    yield original
    # the lab as it was: node3 gone, its slurm.conf, the daemons restarted
    sh('podman', 'rm', '-f', '-t', '2', NODE)
    sh('podman', 'exec', '-i', 'saf-ctl', 'sh', '-c', 'cat > /etc/slurm/slurm.conf', input=original)
    pexec('saf-ctl', 'systemctl', 'restart', 'slurmctld')
    for node in ('saf-node1', 'saf-node2'):
        pexec(node, 'systemctl', 'restart', 'slurmd')
    if not was_up:
        sh('bash', os.path.join(FLEET, 'down.sh'))


@pytest.fixture(scope='module')
def node3(lab, cached_image, tmp_path_factory):
    """The image, applied in image mode, booted as node3."""
    base = tmp_path_factory.mktemp('boot')
    root = copy_image(cached_image, str(base / 'root'))
    stats, _out = play(root)
    assert stats['failures'] == 0
    # the controller learns node3 and the prerequisites; the lab's nodes restart slurmd (TaskPlugin)
    sh('podman', 'exec', '-i', 'saf-ctl', 'sh', '-c', 'cat > /etc/slurm/slurm.conf', input=conf_with_node3(lab))
    assert pexec('saf-ctl', 'systemctl', 'restart', 'slurmctld').returncode == 0
    for node in ('saf-node1', 'saf-node2'):
        pexec(node, 'systemctl', 'restart', 'slurmd')
    sh('podman', 'rm', '-f', '-t', '2', NODE)
    run = sh('podman', 'run', '-d', '--name', NODE, '--hostname', HOST, '--network', NET, '--network-alias', HOST,
             '--label', 'slurm-adopt-lab=fleet', '--runtime', 'runc', '--privileged', '--systemd=always',
             '--cgroupns=private', '-v', SLURM_VOLUME + ':/etc/slurm',
             '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096',
             '--rootfs', root, '/sbin/init')
    assert run.returncode == 0, run.stderr
    assert wait_for(120, lambda: pexec(NODE, 'systemctl', 'is-system-running').stdout.strip()
                    in ('running', 'degraded')), pexec(NODE, 'systemctl', '--failed').stdout
    # what up.sh gives every node at boot (a site's overlay: munge key, host names, keys)
    hosts = pexec('saf-ctl', 'cat', '/etc/hosts').stdout
    address = '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % NET
    ip = sh('podman', 'inspect', '-f', address, NODE).stdout.strip()
    assert sh('podman', 'cp', os.path.join(STATE, 'munge.key'), NODE + ':/etc/munge/munge.key').returncode == 0
    for user in ('fleetalice', 'fleetbob', 'fleetadmin', 'fleetops'):
        assert sh('podman', 'cp', os.path.join(STATE, user + '.pub'),
                  '%s:/home/%s/.ssh-authorized_keys' % (NODE, user)).returncode == 0
    setup = sh('podman', 'exec', '-i', NODE, 'sh', '-eu', input='''
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
        cat >> /etc/hosts <<'EOF'
%s
EOF
        for u in fleetalice fleetbob fleetadmin fleetops; do
            install -d -o $u -g $u -m 700 /home/$u/.ssh
            install -o $u -g $u -m 600 /home/$u/.ssh-authorized_keys /home/$u/.ssh/authorized_keys
            rm -f /home/$u/.ssh-authorized_keys
        done
        mkdir -p /var/lib/slurm/slurmd /var/log/slurm
        systemctl restart munge
        systemctl restart slurmd
    ''' % '\n'.join(line for line in hosts.splitlines() if line.endswith((' ctl', ' node1', ' node2', ' login'))))
    assert setup.returncode == 0, setup.stderr
    for other in ('saf-ctl', 'saf-login', 'saf-node1', 'saf-node2'):
        sh('podman', 'exec', other, 'sh', '-c', 'grep -q " node3$" /etc/hosts || echo "%s node3" >> /etc/hosts' % ip)
    registered = wait_for(90, lambda: pexec('saf-ctl', 'sinfo', '-h', '-n', HOST, '-o', '%T').stdout.strip()
                          in ('idle', 'mixed', 'allocated'))
    assert registered, (pexec('saf-ctl', 'scontrol', 'show', 'node', HOST).stdout
                        + pexec(NODE, 'journalctl', '-u', 'slurmd', '-n', '30', '--no-pager').stdout)
    yield ip


def ssh(user, ip, command):
    # LogLevel INFO: PAM's messages (the module's denial) come back on stderr
    return sh('ssh', '-i', os.path.join(STATE, user), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
              '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=INFO',
              '-o', 'ConnectTimeout=20', '%s@%s' % (user, ip), command, timeout=60)


def test_logind_masked_and_not_running(node3):
    assert pexec(NODE, 'systemctl', 'is-enabled', 'systemd-logind.service').stdout.strip() == 'masked'
    assert pexec(NODE, 'systemctl', 'is-active', 'systemd-logind.service').stdout.strip() != 'active'


def test_user_without_a_job_is_denied(node3):
    res = ssh('fleetbob', node3, 'true')
    assert res.returncode != 0
    assert 'Access denied by pam_slurm_adopt' in res.stderr + res.stdout, res.stderr


def test_admin_gets_in_without_a_job(node3):
    res = ssh('fleetadmin', node3, 'id -un')
    assert res.returncode == 0 and res.stdout.strip() == 'fleetadmin', res.stderr


def test_user_with_a_job_is_adopted(node3):
    sub = pexec('saf-ctl', 'su', '-', 'fleetalice', '-c',
                "sbatch --parsable -w %s -t 5 --wrap 'sleep 240'" % HOST)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(';')[0]
    try:
        assert wait_for(60, lambda: pexec('saf-ctl', 'squeue', '-h', '-j', job, '-o', '%T').stdout.strip()
                        == 'RUNNING')
        res = ssh('fleetalice', node3, 'cat /proc/self/cgroup')
        assert res.returncode == 0, res.stderr
        # adopted into the job's extern step (freezer: proctrack/cgroup's hierarchy)
        assert re.search(r'freezer:.*/job_%s/step_extern' % job, res.stdout), res.stdout
    finally:
        pexec('saf-ctl', 'scancel', job)


def test_drift_check_is_green_after_first_boot(node3):
    res = pexec(NODE, 'python3', CHECK, 'check', '--json', '--config', '/etc/slurm-adopt/check.json')
    report = json.loads(res.stdout)
    bad = [c for c in report['checks'] if c['status'] != 'ok']
    assert res.returncode == 0 and report['status'] == 'ok', bad
    names = [c['check'] for c in report['checks']]
    assert 'logins' in names and 'slurm_config' in names and 'logind' in names
    logins = [c for c in report['checks'] if c['check'] == 'logins'][0]
    assert 'fleetadmin' in logins['message'] and 'denied' in logins['message']
    assert pexec(NODE, 'test', '-f', '/run/slurm-adopt/first-boot.json').returncode == 0
