# SPDX-License-Identifier: GPL-3.0-or-later
"""Image mode (issue 12, part 1) on a real Debian 12 node image root
(lab/image/build.sh: debootstrap, systemd, OpenSSH, munge, slurmd,
libpam-python, python3, the fleet lab's users), without booting it:

  - check mode changes nothing in the image;
  - the rollout applies (module compiled by the image's Python, the adopt
    rule and the admin bypass, pam_systemd out through the image's own
    pam-auth-update, logind masked with a symlink, the drift check with its
    first-boot section), proven with the image's libpam for root, the allowed
    user and the admin of the image's own admin group;
  - a second run changes nothing;
  - the image's own drift check is green for what needs nothing running, and
    red for the first-boot checks until they pass on a running node; its
    first-boot login check runs for real on the image's libpam (a mount
    namespace where the image root is a mount point, as at boot);
  - a failure restores the image; the lockout guard reads the image's
    groups, never the build host's;
  - removal gives back every file of the image byte for byte.

One image copy per module (a few minutes warm on this machine: every run of
the playbook is ~1-4 min depending on load).  Needs root; fails (never skips)
without it."""

import json
import os
import subprocess

import pytest

from imagelab import (chroot, changed_tasks, copy_image, manifest, manifest_diff, play)

MODULE_DIR = '/usr/lib/slurm-adopt'


@pytest.fixture(scope='module')
def image(cached_image, tmp_path_factory):
    """(root of a private copy of the image, its manifest before any run)."""
    root = copy_image(cached_image, str(tmp_path_factory.mktemp('image') / 'root'))
    return root, manifest(root)


def read(root, path):
    with open(root + path) as handle:
        return handle.read()


def test_check_mode_changes_nothing(image):
    root, original = image
    stats, out = play(root, check=True)
    assert stats['failures'] == 0
    assert stats['changed'] > 0, 'check mode reports what it would change'
    assert manifest_diff(original, manifest(root)) == []
    # the diff shows the adopt rule that would be written
    diffs = [d for p in out['plays'] for t in p['tasks'] for d in
             t['hosts'].get('localhost', {}).get('diff', []) if isinstance(d, dict)]
    assert any('pam_slurm_adopt.py' in (d.get('after') or '') for d in diffs)


def test_apply(image):
    root, _original = image
    stats, out = play(root)
    assert stats['failures'] == 0 and stats['changed'] > 0
    sshd = read(root, '/etc/pam.d/sshd')
    assert ('account sufficient pam_python.so %s/pam_slurm_adopt.py action_adopt_failure=deny '
            'action_generic_failure=deny # hpc.slurm_adopt:adopt' % MODULE_DIR) in sshd
    assert 'account required pam_access.so accessfile=/etc/security/slurm-adopt-access.conf' in sshd
    access = read(root, '/etc/security/slurm-adopt-access.conf')
    assert '+:root:ALL' in access and '+:fleetops:ALL' in access and '+:(fleetwheel):ALL' in access
    # pam_systemd out through the image's own pam-auth-update (the profile conflicts with systemd)
    assert 'pam_systemd' not in read(root, '/etc/pam.d/common-session')
    assert os.path.exists(root + '/usr/share/pam-configs/slurm-adopt')
    debconf = chroot(root, 'debconf-show', 'libpam-runtime').stdout
    assert 'slurm-adopt' in debconf and 'systemd' not in debconf.split('profiles:')[1].splitlines()[0]
    # logind masked the way systemctl mask does it; nothing was asked of systemctl
    assert os.readlink(root + '/etc/systemd/system/systemd-logind.service') == '/dev/null'
    # the module: the image's Python compiled it and imports it
    pyver = chroot(root, 'python3', '-c', 'import sys; print("%d%d" % sys.version_info[:2])').stdout.strip()
    pycs = os.listdir(root + MODULE_DIR + '/current/slurm_adopt/__pycache__')
    assert pycs and all(p.endswith('.cpython-%s.pyc' % pyver) for p in pycs)
    assert chroot(root, 'python3', MODULE_DIR + '/pam_slurm_adopt.py', 'self-check').returncode == 0
    # the drift check's configuration names the node's paths and has the first-boot section
    conf = json.loads(read(root, '/etc/slurm-adopt/check.json'))
    assert conf['root'] == '/' and conf['module_path'] == MODULE_DIR + '/pam_slurm_adopt.py'
    assert conf['first_boot']['admin_group'] == 'fleetwheel'
    assert conf['first_boot']['allow'] == ['root', 'fleetops']
    # the image's libpam was asked, for the image's own admin (not a user of this machine)
    probe = [t for p in out['plays'] for t in p['tasks']
             if 'Nobody who must get in is locked out of the image' in t['task']['name']]
    assert probe and 'fleetadmin' in probe[0]['hosts']['localhost']['msg']
    # nothing of the run is left in the image
    assert not os.path.exists(root + '/var/lib/slurm-adopt/rollback')
    assert not os.path.exists(root + '/var/lib/slurm-adopt/preflight')


def test_second_run_changes_nothing(image):
    root, _original = image
    before = manifest(root)
    stats, out = play(root)
    assert stats['failures'] == 0
    assert stats['changed'] == 0, changed_tasks(out)
    assert manifest_diff(before, manifest(root)) == []


def test_image_drift_check(image):
    """In the image (chroot): green for what needs nothing running; the
    first-boot checks are red until they have passed on a running node."""
    root, _original = image
    static = chroot(root, 'python3', MODULE_DIR + '/slurm_adopt_check.py', 'check', '--json',
                    '--only=module_file', '--only=account_stack', '--only=admin_access', '--only=bypass',
                    '--only=pam_systemd', '--only=interface')
    report = json.loads(static.stdout)
    assert report['status'] == 'ok', report
    boot = chroot(root, 'python3', MODULE_DIR + '/slurm_adopt_check.py', 'check', '--json',
                  '--only=slurm_config')
    report = json.loads(boot.stdout)
    assert boot.returncode == 2 and report['status'] == 'fail', report
    assert report['checks'][0]['message'].startswith('first boot, not passed yet:')
    assert not os.path.exists(root + '/run/slurm-adopt/first-boot.json')


def test_first_boot_login_check_on_the_images_libpam(image):
    """The first-boot `logins` check, run for real inside the image root (a
    private mount namespace where the root is a mount point, as at boot):
    root, the allowed user and the admin from the image's /etc/group get in
    through the image's live stack and libpam; a user without a job is
    denied.  slurm_config stays red (no controller here)."""
    root, _original = image
    script = ('R=$0; mount --bind "$R" "$R" && mount -t proc proc "$R/proc" && mount --rbind /dev "$R/dev" '
              '&& mount -t tmpfs tmpfs "$R/run" && mount -t tmpfs tmpfs "$R/tmp" && cd "$R" '
              '&& exec chroot "$R" python3 %s/slurm_adopt_check.py check --json --only=logins --only=slurm_config'
              % MODULE_DIR)
    res = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, root],
                         capture_output=True, text=True, check=False, timeout=300)
    report = json.loads(res.stdout)
    by = dict((c['check'], c) for c in report['checks'])
    assert by['logins']['status'] == 'ok', by['logins']
    assert 'fleetadmin, fleetops, root get in' in by['logins']['message']
    assert 'slurm-adopt-nojob (no job) is denied' in by['logins']['message']
    assert by['slurm_config']['status'] == 'fail' and report['status'] == 'fail'


def test_guard_reads_the_images_groups(image):
    """An admin group with a member on this machine but not in the image is
    refused (the image's /etc/group decides, not the build host's), and the
    image is restored."""
    root, _original = image
    before = manifest(root)
    with open(root + '/etc/group') as handle:
        in_image = set(line.split(':')[0] for line in handle if ':' in line)
    host = subprocess.run(['getent', 'group'], capture_output=True, text=True, check=True).stdout.splitlines()
    candidates = [line.split(':')[0] for line in host
                  if line.split(':')[3].strip() and line.split(':')[0] not in in_image]
    group = candidates[0] if candidates else 'slurm-adopt-host-only'
    if not candidates:
        subprocess.run(['groupadd', '-f', group], check=True)
        subprocess.run(['gpasswd', '-a', 'nobody', group], check=True, capture_output=True)
    try:
        stats, out = play(root, {'slurm_adopt_admin_group': group}, expect_rc=2)
    finally:
        if not candidates:
            subprocess.run(['groupdel', group], check=False)
    assert stats['failures'] == 1
    text = json.dumps(out)
    assert 'RESTORED' in text and "admin group '%s'" % group in text and 'in the image' in text
    assert manifest_diff(before, manifest(root)) == []


def test_removal_restores_the_image_byte_for_byte(image):
    root, original = image
    stats, out = play(root, state='absent')
    assert stats['failures'] == 0 and stats['changed'] > 0
    assert manifest_diff(original, manifest(root)) == []
    stats, out = play(root, state='absent')
    assert stats['changed'] == 0, changed_tasks(out)
