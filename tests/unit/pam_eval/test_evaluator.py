# SPDX-License-Identifier: GPL-3.0-or-later
"""The real-libpam evaluator itself: real answers, nothing changes outside
its namespace, hung modules are bounded, probe users live only inside."""

import glob
import hashlib
import os
import pwd
import time
import uuid

import pytest

import _pam_eval as pe

LIVE_PATHS = ('/etc/pam.d', '/etc/security', '/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow',
              '/etc/nsswitch.conf', '/var/lib/extrausers', '/usr/lib/pam.d', '/home',
              '/lib/x86_64-linux-gnu/security', '/lib/security')


def _digest(paths=LIVE_PATHS):
    """sha256 over names, modes and contents of every file below ``paths``."""
    h = hashlib.sha256()
    for top in paths:
        if not os.path.lexists(top):
            h.update(b'absent:' + top.encode())
            continue
        walk = [(top, [], [''])] if not os.path.isdir(top) else os.walk(top)
        for base, dirs, files in walk:
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(base, name) if name else base
                st = os.lstat(path)
                h.update(('%s %o %d\n' % (path, st.st_mode, st.st_size)).encode())
                if os.path.islink(path):
                    h.update(os.readlink(path).encode())
                elif os.path.isfile(path):
                    with open(path, 'rb') as handle:
                        h.update(handle.read())
            for name in dirs:
                h.update(('dir %s\n' % os.path.join(base, name)).encode())
    return h.hexdigest()


def _tree(tmp_path, files, security=True):
    pamd = tmp_path / 'tree' / 'etc' / 'pam.d'
    pamd.mkdir(parents=True)
    for name, text in files.items():
        (pamd / name).write_text(text)
    if security:
        (tmp_path / 'tree' / 'etc' / 'security').mkdir()
        (tmp_path / 'tree' / 'etc' / 'security' / 'access.conf').write_text('-:pe-blocked:ALL\n')
    return str(tmp_path / 'tree')


UNIX = 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n'


def test_real_pam_unix_answers_and_messages(tmp_path):
    """pam_unix itself decides: right and wrong password, unknown user; its
    prompt comes through the conversation, its syslog lines are captured."""
    tree = _tree(tmp_path, {'pe-unix': UNIX})
    users = [{'name': 'pe-probe', 'uid': 4101, 'password': 'right'}]
    out = pe.evaluate([
        {'service': 'pe-unix', 'user': 'pe-probe', 'op': 'auth', 'password': 'right'},
        {'service': 'pe-unix', 'user': 'pe-probe', 'op': 'auth', 'password': 'wrong'},
        {'service': 'pe-unix', 'user': 'pe-nosuch', 'op': 'account'},
        {'service': 'pe-unix', 'user': 'pe-probe', 'ops': ['auth', 'account', 'open_session'], 'password': 'right',
         'rhost': '192.0.2.1'},
    ], tree=tree, probe_users=users)
    ok, wrong, unknown, full = out['results']
    assert ok['rc_name'] == 'PAM_SUCCESS'
    assert ok['messages'] == [{'style': 'PAM_PROMPT_ECHO_OFF', 'text': 'Password: '}]
    assert wrong['rc_name'] == 'PAM_AUTH_ERR'
    assert any('authentication failure' in line and 'pe-probe' in line for line in wrong['log']), wrong['log']
    assert wrong['elapsed'] < 1.5, 'the fail delay of libpam is not suppressed'
    assert unknown['rc_name'] == 'PAM_USER_UNKNOWN'
    assert [s['op'] for s in full['steps']] == ['auth', 'account', 'open_session', 'close_session']
    assert all(s['rc_name'] == 'PAM_SUCCESS' for s in full['steps'])
    assert any('session opened for user pe-probe' in line for line in full['log'])
    assert out['libpam'] and 'libpam.so' in out['libpam']


def test_pam_env_and_items_reach_the_modules(tmp_path):
    """pam_env sets a variable from its real config; pam_succeed_if sees PAM_RHOST."""
    tree = _tree(tmp_path, {'pe-env': 'session required pam_env.so conffile=/etc/security/pe-env.conf readenv=0\n'
                            'account required pam_succeed_if.so rhost = 192.0.2.7\n'})
    with open(os.path.join(tree, 'etc', 'security', 'pe-env.conf'), 'w') as handle:
        handle.write('PE_MARK DEFAULT=hello\n')
    out = pe.evaluate([
        {'service': 'pe-env', 'user': 'root', 'op': 'open_session'},
        {'service': 'pe-env', 'user': 'root', 'op': 'account', 'rhost': '192.0.2.7'},
        {'service': 'pe-env', 'user': 'root', 'op': 'account', 'rhost': '192.0.2.8'},
    ], tree=tree)
    sess, match, other = out['results']
    assert sess['env'].get('PE_MARK') == 'hello'
    assert match['rc_name'] == 'PAM_SUCCESS'
    assert other['rc_name'] == 'PAM_AUTH_ERR'


def test_live_system_is_untouched(tmp_path, standin):
    """Probe users, module overlay, tree mounts, sessions with modules that
    write (pam_mkhomedir creates a home, pam_lastlog writes /var/log):
    nothing outside the namespace changes, nothing is left mounted."""
    service = 'pe-live-%s' % uuid.uuid4().hex[:8]
    tree = _tree(tmp_path, {service: UNIX + 'session required pam_mkhomedir.so\nsession optional pam_lastlog.so\n'
                            'account required pam_sss.so\n'})
    before = _digest()
    with open('/proc/self/mountinfo') as handle:
        mounts_before = handle.read()
    out = pe.evaluate([
        {'service': service, 'user': 'pe-home', 'ops': ['auth', 'open_session'], 'password': 'pw'},
        {'service': service, 'user': 'pe-dir', 'op': 'account'},
        {'service': service, 'user': 'root', 'op': 'auth', 'password': 'new-root-pw'},
    ], tree=tree, probe_users=[{'name': 'pe-home', 'uid': 4102, 'password': 'pw', 'home': '/home/pe-home'},
                               {'name': 'pe-dir', 'uid': 4103, 'source': 'extrausers'},
                               {'name': 'root', 'password': 'new-root-pw', 'groups': ['pe-newgroup']}],
        module_overlay={'pam_sss.so': standin, 'pam_lastlog.so': None},
        files={'answers': 'pam_sss account * * 0 0 up\n'})
    home, directory, root = out['results']
    assert home['rc_name'] == 'PAM_SUCCESS', home
    assert any('Creating directory' in m['text'] for m in home['messages']), home['messages']
    assert directory['rc_name'] == 'PAM_SUCCESS' and directory['trace'][0]['module'] == 'pam_sss'
    assert root['rc_name'] == 'PAM_SUCCESS', 'root password changed only in the namespace'
    assert _digest() == before
    assert not os.path.exists('/home/pe-home')
    with open('/proc/self/mountinfo') as handle:
        assert handle.read() == mounts_before
    assert any(service in line for line in home['log']), 'the probe\'s log lines are captured'
    for path in glob.glob('/var/log/*.log') + glob.glob('/var/log/syslog*') + glob.glob('/var/log/messages*'):
        with open(path, errors='replace') as handle:
            assert service not in handle.read(), 'probe logins reached the system log (%s)' % path


def test_probe_users_exist_only_in_the_namespace(tmp_path):
    tree = _tree(tmp_path, {'pe-unix': UNIX})
    out = pe.evaluate([{'service': 'pe-unix', 'user': name, 'op': 'account'} for name in ('pe-only', 'pe-dironly')],
                      tree=tree, probe_users=[{'name': 'pe-only', 'uid': 4104},
                                              {'name': 'pe-dironly', 'uid': 4105, 'source': 'extrausers'}])
    assert [r['rc_name'] for r in out['results']] == ['PAM_SUCCESS', 'PAM_SUCCESS']
    for name in ('pe-only', 'pe-dironly'):
        with pytest.raises(KeyError):
            pwd.getpwnam(name)


def test_directory_users_are_not_local(tmp_path):
    """pam_localuser (real) says "not local" for an extrausers user, and
    "local" for a user of /etc/passwd: the directory users are real NSS users."""
    tree = _tree(tmp_path, {'pe-local': 'account required pam_localuser.so\n'})
    out = pe.evaluate([{'service': 'pe-local', 'user': u, 'op': 'account'} for u in ('pe-l', 'pe-d')], tree=tree,
                      probe_users=[{'name': 'pe-l', 'uid': 4106}, {'name': 'pe-d', 'uid': 4107, 'source': 'extrausers'}])
    assert [r['rc_name'] for r in out['results']] == ['PAM_SUCCESS', 'PAM_PERM_DENIED']


def test_hung_module_is_bounded(tmp_path, standin):
    """A module that sleeps 60 s: its query times out after about its own
    timeout; the next query still runs and answers."""
    tree = _tree(tmp_path, {'pe-hang': 'account required pam_sss.so\n'})
    start = time.time()
    out = pe.evaluate([
        {'service': 'pe-hang', 'user': 'root', 'op': 'account', 'timeout': 1.5},
        {'service': 'pe-hang', 'user': 'pe-fast', 'op': 'account', 'timeout': 1.5},
    ], tree=tree, probe_users=[{'name': 'pe-fast', 'uid': 4108}], module_overlay={'pam_sss.so': standin},
        files={'answers': 'pam_sss account root * 0 60000 hung\npam_sss account * * 6 0 up\n'})
    elapsed = time.time() - start
    hung, fast = out['results']
    assert hung['status'] == 'timeout' and hung['rc_name'] == 'timeout' and hung['rc'] is None
    assert hung['trace'] == [{'module': 'pam_sss', 'function': 'account', 'user': 'root', 'rc': 0, 'tag': 'hung',
                              'extra': ['0']}]
    assert 1.4 < hung['elapsed'] < 3
    assert fast['rc_name'] == 'PAM_PERM_DENIED'
    assert elapsed < 15


def test_module_overlay_replaces_and_removes(tmp_path, standin):
    """pam_permit.so removed: a required rule on it fails the stack
    (PAM_MODULE_UNKNOWN in 1.5.2); pam_sss is the stand-in (its PAM_IGNORE,
    alone in the stack, leaves libpam with no decision: PAM_PERM_DENIED);
    other modules real."""
    tree = _tree(tmp_path, {'pe-ov': 'account required pam_permit.so\n', 'pe-ov2': 'account required pam_sss.so\n',
                            'pe-ov3': 'account required pam_deny.so\n'})
    q = [{'service': s, 'user': 'root', 'op': 'account'} for s in ('pe-ov', 'pe-ov2', 'pe-ov3')]
    out = pe.evaluate(q, tree=tree, module_overlay={'pam_permit.so': None, 'pam_sss.so': standin},
                      files={'answers': 'pam_sss account root * 25 0 x\n'})
    assert [r['rc_name'] for r in out['results']] == ['PAM_MODULE_UNKNOWN', 'PAM_PERM_DENIED', 'PAM_AUTH_ERR']
    assert out['results'][1]['trace'][0]['rc'] == 25
    out = pe.evaluate(q[:1], tree=tree)
    assert out['results'][0]['rc_name'] == 'PAM_SUCCESS'


def test_vendor_dir_from_tree_or_hidden(tmp_path):
    """A service only in the tree's usr/lib/pam.d is found there; without a
    vendor dir in the tree, the system's /usr/lib/pam.d is hidden."""
    tree = _tree(tmp_path, {'other': 'account required pam_deny.so\n'})
    vendor = os.path.join(tree, 'usr', 'lib', 'pam.d')
    os.makedirs(vendor)
    with open(os.path.join(vendor, 'pe-vendor'), 'w') as handle:
        handle.write('account required pam_permit.so\n')
    q = [{'service': 'pe-vendor', 'user': 'root'}, {'service': 'systemd-user', 'user': 'root'}]
    with_vendor = pe.evaluate(q, tree=tree)['results']
    assert [r['rc_name'] for r in with_vendor] == ['PAM_SUCCESS', 'PAM_AUTH_ERR']
    os.unlink(os.path.join(vendor, 'pe-vendor'))
    os.rmdir(vendor)
    hidden = pe.evaluate(q, tree=tree)['results']
    assert [r['rc_name'] for r in hidden] == ['PAM_AUTH_ERR', 'PAM_AUTH_ERR'], 'falls to "other"'


def test_errors_are_reported_not_hidden(tmp_path):
    with pytest.raises(pe.EvalError, match='service and user'):
        pe.evaluate([{'service': 'x'}])
    with pytest.raises(pe.EvalError, match='unknown op'):
        pe.evaluate([{'service': 'x', 'user': 'root', 'op': 'login'}])
    with pytest.raises(pe.EvalError, match='not a directory'):
        pe.evaluate([{'service': 'x', 'user': 'root'}], tree=str(tmp_path / 'missing'))


def _res(service, user, rc_name, labels=None, trace=()):
    return {'query': {'service': service, 'user': user, 'ops': ['account'], 'labels': labels},
            'rc_name': rc_name, 'status': 'ok', 'trace': list(trace)}


def test_compare_reports_changes_missing_and_new_hung_modules():
    hung = {'module': 'pam_sss', 'function': 'account', 'user': 'u', 'rc': 9, 'tag': 'hung'}
    before = [_res('sshd', 'a', 'PAM_SUCCESS', {'c': 1}), _res('su', 'a', 'PAM_SUCCESS'),
              _res('login', 'a', 'PAM_SUCCESS'), _res('cron', 'a', 'PAM_SUCCESS', trace=[hung])]
    after = [_res('sshd', 'a', 'PAM_PERM_DENIED', {'c': 1}), _res('su', 'a', 'PAM_SUCCESS', trace=[hung]),
             _res('cron', 'a', 'PAM_SUCCESS', trace=[hung]), _res('new', 'a', 'PAM_SUCCESS')]
    violations = pe.compare(before, after)
    assert sorted(violations) == sorted([
        'sshd account a [c=1]: PAM_SUCCESS -> PAM_PERM_DENIED',
        'su account a: now touches a hung module (pam_sss account), did not before',
        'login account a: only before',
        'new account a: only after',
    ])
    allowed = pe.compare(before, after, allowed=lambda b, a: b['query']['service'] == 'sshd')
    assert not any(v.startswith('sshd') for v in allowed) and len(allowed) == 3


def test_image_root_uses_the_images_libpam_python_and_users(tmp_path, harness):
    """root=<image>: the transactions run chrooted in the image with its own
    python (3.14 in sid), libpam and /etc/passwd; probe users are added to
    the image's files in the namespace only; nothing in the image changes."""
    root = harness.image_root('sid')
    if root is None:
        pytest.skip('no sid image in this checkout (lab/pamcorpus/chroot.sh, branch pam-corpus) and '
                    'PAM_EVAL_SID_ROOT is not set')
    tree = _tree(tmp_path, {'pe-unix': UNIX})
    image_paths = [os.path.join(root, p.lstrip('/'))
                   for p in ('/etc/passwd', '/etc/shadow', '/etc/group', '/etc/pam.d', '/tmp', '/home')]
    before = _digest(image_paths)
    out = pe.evaluate([{'service': 'pe-unix', 'user': 'pe-img', 'op': 'auth', 'password': 'pw'},
                       {'service': 'pe-unix', 'user': 'sssd', 'op': 'account'},
                       {'service': 'sshd', 'user': 'root', 'op': 'account'}],
                      tree=tree, root=root, probe_users=[{'name': 'pe-img', 'uid': 4110, 'password': 'pw'}])
    img, image_user, sshd = out['results']
    assert 'sssd' not in open('/etc/passwd').read(), 'pick a user that only the image has'
    assert out['python'].startswith('3.14')
    assert img['rc_name'] == 'PAM_SUCCESS' and image_user['rc_name'] == 'PAM_SUCCESS'
    assert sshd['rc_name'] == 'PAM_ABORT', 'the tree (no sshd, no other) hides the image pam.d'
    assert _digest(image_paths) == before


def test_authselect_symlinks_and_paths_missing_on_the_system(tmp_path):
    """RHEL: /etc/pam.d/system-auth -> /etc/authselect/system-auth (absolute).
    The tree's etc/authselect is mounted although this system has none."""
    assert not os.path.exists('/etc/authselect'), 'this test needs a system without /etc/authselect'
    tree = _tree(tmp_path, {'pe-rhel': 'account include system-auth\n'})
    os.makedirs(os.path.join(tree, 'etc', 'authselect'))
    with open(os.path.join(tree, 'etc', 'authselect', 'system-auth'), 'w') as handle:
        handle.write('account required pam_succeed_if.so user = root\n')
    os.symlink('/etc/authselect/system-auth', os.path.join(tree, 'etc', 'pam.d', 'system-auth'))
    out = pe.evaluate([{'service': 'pe-rhel', 'user': u} for u in ('root', 'pe-x')], tree=tree,
                      probe_users=[{'name': 'pe-x', 'uid': 4111}])
    assert [r['rc_name'] for r in out['results']] == ['PAM_SUCCESS', 'PAM_AUTH_ERR']
    assert not os.path.exists('/etc/authselect')
    assert any('/etc/authselect' in w for w in out['warnings'])


def test_extra_binds(tmp_path):
    """binds: a file of ours over /etc/shells; the real pam_shells reads it."""
    tree = _tree(tmp_path, {'pe-shells': 'account required pam_shells.so\n'})
    shells = tmp_path / 'shells'
    shells.write_text('/bin/sh\n/usr/local/bin/pe-shell\n')
    q = [{'service': 'pe-shells', 'user': 'pe-sh', 'op': 'account'}]
    users = [{'name': 'pe-sh', 'uid': 4112, 'shell': '/usr/local/bin/pe-shell'}]
    plain = pe.evaluate(q, tree=tree, probe_users=users)['results'][0]
    bound = pe.evaluate(q, tree=tree, probe_users=users, binds={'/etc/shells': str(shells)})['results'][0]
    assert (plain['rc_name'], bound['rc_name']) == ('PAM_AUTH_ERR', 'PAM_SUCCESS')


def test_expectations_and_allowed_rules():
    ok, denied = _res('sshd', 'a', 'PAM_SUCCESS'), _res('sshd', 'b', 'PAM_PERM_DENIED')
    hung = dict(_res('sshd', 'b', 'timeout'), status='timeout')
    assert pe.expectation_failures([ok, denied], allow=['a'], deny=['b']) == []
    assert pe.expectation_failures([ok, denied], allow=['b'], deny=['a']) == [
        'sshd account a: PAM_SUCCESS, must be denied', 'sshd account b: PAM_PERM_DENIED, must be allowed']
    assert pe.expectation_failures([hung], deny=['b']) == ['sshd account b: timeout, must be denied']
    rule = pe.allowed_by([{'service': 'sshd', 'user': 'b', 'to': 'deny'}])
    b_ok = _res('sshd', 'b', 'PAM_SUCCESS')
    assert rule(b_ok, denied) and not rule(b_ok, hung) and not rule(ok, denied)
    assert not rule(_res('su', 'b', 'PAM_SUCCESS'), denied)
    assert pe.allowed_by([{'op': 'auth'}])(ok, denied) is False
    assert pe.allowed_by([{'to': 'allow'}])(denied, ok) is True
