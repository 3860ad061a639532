# SPDX-License-Identifier: GPL-3.0-or-later
"""pam_adopt (module + module_utils/_pam_edit) on real distribution trees:
placement, includes turned into substacks, placeholders, the admin access
file, idempotence, check mode/diff, lockout guards (static and real libpam),
writes through atomic_move with rollback, and byte-identical removal.

Every run with a change goes through the real-libpam guard (this machine's
libpam and modules in a private mount namespace, tests/unit/plugins/
pam_nodes.py replaces the modules this machine lacks by pam_permit)."""

import json
import os

import pytest

from conftest import DISTROS, snapshot
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pe
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_guard as pg
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_stack as ps
from ansible_collections.hpc.slurm_adopt.plugins.modules import pam_adopt, pam_stack_info
from pam_nodes import ANSIBLE_USER, FAKE_MODULES, add_users, missing_modules, node, read, synthetic, write

SCRIPT = '/usr/lib/slurm-adopt/pam_slurm_adopt.py'
ACCESS = '/etc/security/slurm-adopt-access.conf'


class Exit(Exception):
    def __init__(self, result, failed):
        Exception.__init__(self, result.get('msg'))
        self.result = result
        self.failed = failed


def run_module(mod, args, check=False, diff=False, monkeypatch=None):
    args = dict(args)
    args['_ansible_check_mode'] = check
    args['_ansible_diff'] = diff

    def warn(self, msg):
        self.__dict__.setdefault('test_warnings', []).append(msg)

    def exit_json(self, **kwargs):
        kwargs.setdefault('warnings', self.__dict__.get('test_warnings', []))
        raise Exit(kwargs, False)

    def fail_json(self, **kwargs):
        raise Exit(kwargs, True)

    monkeypatch.setattr(mod.AnsibleModule, 'warn', warn)
    monkeypatch.setattr(mod.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(mod.AnsibleModule, 'fail_json', fail_json)
    with patch_module_args(args):
        with pytest.raises(Exit) as info:
            mod.main()
    return info.value


@pytest.fixture(autouse=True)
def overlay(monkeypatch):
    monkeypatch.setattr(pg, 'MODULE_OVERLAY', missing_modules())


@pytest.fixture
def adopt(monkeypatch):
    def call(root, check=False, diff=False, **kwargs):
        kwargs['root'] = root
        kwargs.setdefault('ensure_access_for', ['root', ANSIBLE_USER])
        kwargs.setdefault('generated_files', 'edit')     # the fixture trees are generated; tests of that say so
        return run_module(pam_adopt, kwargs, check=check, diff=diff, monkeypatch=monkeypatch)
    return call


@pytest.fixture
def info(monkeypatch):
    def call(root, **kwargs):
        kwargs['root'] = root
        ret = run_module(pam_stack_info, kwargs, monkeypatch=monkeypatch)
        assert not ret.failed, ret.result
        return ret.result
    return call


def params_for(root, **overrides):
    spec = pam_adopt.argument_spec()
    params = dict((k, v.get('default')) for k, v in spec.items())
    params.update(root=root, check_mode=False, ensure_access_for=['root', ANSIBLE_USER], generated_files='edit')
    params.update(overrides)
    assert pam_adopt.check_params(params) is None
    return params


MODES = [
    ('pam_python', 'pam_access'),
    ('pam_python', 'pam_listfile'),
    ('pam_exec', 'pam_access'),
    ('pam_exec', 'none'),
    ('service', 'pam_access'),
    ('service', 'pam_listfile'),
]
MODULE_OF = {'pam_python': 'pam_python.so', 'pam_exec': 'pam_exec.so', 'service': 'pam_slurm_adopt_client.so'}
WITH_CLIENT = FAKE_MODULES + ('pam_slurm_adopt_client.so',)
CASES = [(d, 'pam_python', 'pam_access') for d in DISTROS] + \
    [(d, i, a) for d in ('debian12', 'rocky9') for i, a in MODES if (i, a) != ('pam_python', 'pam_access')]


@pytest.mark.parametrize('distro, interface, admin', CASES)
def test_present_idempotent_and_absent_restores_byte_identical(tmp_path, adopt, info, distro, interface, admin):
    root = node(tmp_path, distro, modules=WITH_CLIENT if interface == 'service' else FAKE_MODULES)
    before = snapshot(root)
    extra = {'listfile_users': ['root', ANSIBLE_USER]} if admin == 'pam_listfile' else {}
    if admin == 'none':
        extra['ensure_access_for'] = ['root']
    first = adopt(root, interface=interface, admin_access=admin, **extra)
    assert not first.failed, first.result
    assert first.result['changed']
    assert '/etc/pam.d/sshd' in first.result['files']
    # the real libpam judged it: the probe (an ordinary user without a job) is refused now
    guard = first.result['guard']
    assert guard['mode'] == 'libpam' and 'sshd account' in guard['checked']
    assert guard['problems'] == [] and guard['let_in'] == []

    health = info(root, service='sshd', adopt_match='managed')
    assert health['adopt_last'], health['problems']
    assert health['problems'] == []
    assert health['pam_systemd'] == []
    assert health['short_circuits'] == [] and health['fail_open'] == []
    last = [r for r in health['stack'] if r['managed'] and r['substack_depth'] == 0
            and r['managed'] in ('adopt', 'admin_access')]
    if admin == 'pam_access':
        assert [r['module'] for r in last] == [MODULE_OF[interface], 'pam_access.so']
        assert last[0]['control'] == 'sufficient'
        assert last[1]['args'] == ['accessfile=' + ACCESS]
        assert read(root, ACCESS).endswith('-:ALL:ALL\n')
        assert health['admin_access']['state'] == 'ok'
    elif admin == 'pam_listfile':
        assert [r['module'] for r in last] == ['pam_listfile.so', MODULE_OF[interface]]
        assert last[1]['control'] == 'required'
        assert read(root, '/etc/security/slurm-adopt-allowed-users') == 'root\n%s\n' % ANSIBLE_USER
    else:
        assert len(last) == 1 and last[0]['control'] == 'required'
    # every managed rule sits in the service's own file; no shared file was edited for the account stack
    assert set(r['file'] for r in last) == set(['/etc/pam.d/sshd'])
    shared = [p for p in first.result['files'] if p.startswith('/etc/pam.d/') and p != '/etc/pam.d/sshd']
    assert all(d['classification'] == 'pam_systemd' for d in first.result['disabled'] if d['file'] in shared)

    written = snapshot(root)
    second = adopt(root, interface=interface, admin_access=admin, **extra)
    assert not second.failed and not second.result['changed'], second.result
    assert snapshot(root) == written

    gone = adopt(root, state='absent')
    assert not gone.failed and gone.result['changed']
    assert gone.result['warnings'] == []
    assert snapshot(root) == before
    assert not os.path.exists(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json'))
    assert not adopt(root, state='absent').result['changed']


def test_exact_rule_shapes(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    ret = adopt(root, admin_access='none', interface='pam_python', pam_systemd='keep', ensure_access_for=['root'])
    assert ret.result['adopt_rule'] == ('account required pam_python.so %s action_adopt_failure=deny '
                                        'action_generic_failure=deny' % SCRIPT)
    assert ret.result['adopt_rule'] + ' # hpc.slurm_adopt:adopt\n' in read(root, '/etc/pam.d/sshd')
    ret = adopt(root, admin_access='none', interface='pam_exec', dash=True, pam_systemd='keep',
                ensure_access_for=['root'], options={'action_adopt_failure': 'deny', 'log_level': 'debug',
                                                     'join_container': False},
                pam_exec_env={'SLURM_CONF': '/etc/slurm/slurm.conf'})
    assert not ret.failed, ret.result
    assert ret.result['adopt_rule'] == (
        '-account required pam_exec.so stdout quiet /usr/bin/env SLURM_CONF=/etc/slurm/slurm.conf '
        '/usr/bin/python3 -I -S %s pam-exec action_adopt_failure=deny action_generic_failure=deny log_level=debug '
        'join_container=false' % SCRIPT)
    text = read(root, '/etc/pam.d/sshd')
    assert text.count('hpc.slurm_adopt:adopt') == 1   # the old rule was replaced, not duplicated


def test_service_rule_shape(tmp_path, adopt):
    """The adoption service's client: the module named without a path (it
    is in the PAM module directory), the C module's options, no interpreter
    and no script."""
    root = node(tmp_path, 'debian12', modules=WITH_CLIENT)
    ret = adopt(root, admin_access='none', interface='service', pam_systemd='keep', ensure_access_for=['root'],
                options={'action_adopt_failure': 'deny', 'log_level': 'info', 'join_container': False})
    assert not ret.failed, ret.result
    assert ret.result['interface'] == 'service'
    assert ret.result['adopt_rule'] == ('account required pam_slurm_adopt_client.so action_adopt_failure=deny '
                                        'action_generic_failure=deny log_level=info join_container=false')
    assert ret.result['adopt_rule'] + ' # hpc.slurm_adopt:adopt\n' in read(root, '/etc/pam.d/sshd')
    # the line is an adopt rule for the parser, the guard's model and pam_stack_info
    line = [ln for ln in ps.parse(read(root, '/etc/pam.d/sshd')).lines if ln.added_tag == 'adopt'][0]
    assert ps.is_adopt_rule(line) and pg.adopt_rule_facts(line)[0] == 'pam_python'


def test_service_rule_refused_while_the_client_is_missing(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    before = snapshot(root, below=('etc', 'var'))
    ret = adopt(root, interface='service', pam_systemd='keep')
    assert ret.failed and 'missing on the node: pam_slurm_adopt_client.so' in ret.result['msg'], ret.result
    assert snapshot(root, below=('etc', 'var')) == before


def test_debian_include_becomes_a_substack(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    ret = adopt(root, pam_systemd='keep').result
    lines = read(root, '/etc/pam.d/sshd').splitlines()
    idx = lines.index('#hpc.slurm_adopt:substack# @include common-account')
    assert lines[idx + 1] == 'account substack common-account # hpc.slurm_adopt:substack'
    assert lines[idx + 2].startswith('account sufficient pam_python.so')
    assert lines[idx + 3] == ('account required pam_access.so accessfile=%s # hpc.slurm_adopt:admin_access'
                              % ACCESS)
    # common-account's pam_unix ends the stack for an expired password (new_authtok_reqd=done)
    assert [(t['transformation'], t['line']) for t in ret['transformed']] == [('substack', 14)]
    assert 'common-account:17 (new_authtok_reqd=done)' in ret['transformed'][0]['reason']
    assert ret['files'] == ['/etc/pam.d/sshd', ACCESS]


def test_rocky_password_auth_is_left_alone(tmp_path, adopt):
    root = node(tmp_path, 'rocky9')
    before = read(root, '/etc/pam.d/password-auth')
    ret = adopt(root, pam_systemd='keep').result
    assert read(root, '/etc/pam.d/password-auth') == before
    assert ret['disabled'] == [] and ret['kept'] == []
    (conv,) = ret['transformed']
    assert conv['transformation'] == 'substack' and conv['line'] == 6
    # the rules that made it necessary: pam_localuser and pam_usertype issystem
    assert 'password-auth:14' in conv['reason'] and 'password-auth:15' in conv['reason']
    lines = read(root, '/etc/pam.d/sshd').splitlines()
    idx = lines.index('#hpc.slurm_adopt:substack# account    include      password-auth')
    assert lines[idx + 1] == 'account substack password-auth # hpc.slurm_adopt:substack'
    assert lines[idx + 2].startswith('account sufficient pam_python.so')


def test_check_mode_writes_nothing_and_diffs_each_file(tmp_path, adopt):
    root = node(tmp_path, 'debian13')
    before = snapshot(root)
    ret = adopt(root, check=True, diff=True)
    assert ret.result['changed']
    assert ret.result['guard']['mode'] == 'libpam'      # the real-libpam check runs in check mode too
    assert snapshot(root) == before
    assert not os.path.exists(os.path.join(root, 'var/lib/slurm-adopt'))
    diffs = dict((d['after_header'], d) for d in ret.result['diff'])
    assert sorted(diffs) == ['/etc/pam.d/common-session', '/etc/pam.d/sshd', ACCESS]
    assert 'pam_systemd' in diffs['/etc/pam.d/common-session']['before']
    after = diffs['/etc/pam.d/common-session']['after']
    assert '#hpc.slurm_adopt:pam_systemd# session\toptional\tpam_systemd.so' in after
    assert 'session [default=ignore] pam_permit.so # hpc.slurm_adopt:placeholder' in after


def test_check_mode_on_a_node_without_the_module_warns(tmp_path, adopt):
    root = node(tmp_path, 'debian12', modules=('pam_access.so',), script=False)
    ret = adopt(root, check=True, interface='pam_python', pam_systemd='keep')
    assert not ret.failed and ret.result['changed']
    assert any('pam_python.so' in w and SCRIPT in w and 'check mode' in w for w in ret.result['warnings'])
    ret = adopt(root, interface='pam_python', pam_systemd='keep')
    assert ret.failed and 'missing on the node' in ret.result['msg']


@pytest.mark.parametrize('missing, dash, admin', [('pam_python.so', False, 'pam_access'),
                                                  ('pam_python.so', True, 'pam_listfile'),
                                                  ('pam_python.so', True, 'none'),
                                                  ('script', False, 'pam_access'),
                                                  ('script', True, 'pam_access')])
def test_refuses_rules_whose_module_is_missing(tmp_path, adopt, missing, dash, admin):
    # "-account required" with a missing module: libpam answers PAM_MODULE_UNKNOWN and the
    # required rule fails every login (tests/unit/pam_eval measured it): refused like without "-"
    modules = ('pam_access.so', 'pam_listfile.so') if missing == 'pam_python.so' else \
        ('pam_python.so', 'pam_access.so', 'pam_listfile.so')
    root = node(tmp_path, 'debian12', modules=modules, script=(missing != 'script'))
    before = snapshot(root, below=('etc', 'var'))
    ret = adopt(root, dash=dash, interface='pam_python', admin_access=admin, pam_systemd='keep',
                listfile_users=['root', ANSIBLE_USER], ensure_access_for=['root'])
    assert ret.failed
    assert 'missing on the node' in ret.result['msg']
    assert (SCRIPT if missing == 'script' else 'pam_python.so') in ret.result['msg']
    assert snapshot(root, below=('etc', 'var')) == before


def test_dash_sufficient_rule_may_wait_for_its_module(tmp_path, adopt):
    # "-account sufficient" with a missing module: PAM_MODULE_UNKNOWN is ignored, pam_access decides
    root = node(tmp_path, 'debian12', modules=('pam_access.so',))
    ret = adopt(root, dash=True, interface='pam_python', pam_systemd='keep')
    assert not ret.failed, ret.result
    assert '-account sufficient pam_python.so' in read(root, '/etc/pam.d/sshd')
    assert any('pam_python.so is missing' in w and 'nobody is adopted' in w for w in ret.result['warnings'])


@pytest.mark.parametrize('args, message', [
    (dict(control='required'), 'control=required with admin_access=pam_access'),
    (dict(control='sufficient', admin_access='pam_listfile'), 'lets every user in'),
    (dict(control='sufficient', admin_access='none'), 'lets every user in'),
    (dict(options={'action_no_job': 'deny'}), 'action_no_job'),
    (dict(options={'action_no_jobs': 'allow'}), 'action_no_jobs'),
    (dict(options={'nodename': 'a b'}), 'no blanks'),
    (dict(options={'nodename': 'x#y'}), 'no blanks'),
    (dict(access_rules=['root:ALL']), 'is not "+|-:users:origins"'),
    (dict(access_rules=[]), 'access_rules is empty'),
    (dict(access_rules=['+:root:ALL', '+:wheel:ALL']), 'must end with a rule that denies everybody else'),
    (dict(access_rules=['+:root:ALL', '-:ALL:LOCAL']), 'must end with a rule that denies everybody else'),
    (dict(access_file='/etc/security/access.conf'), 'shared by every service that uses pam_access'),
    (dict(services=['../etc/passwd']), 'not a PAM service name'),
    (dict(services=[]), 'at least one'),
    (dict(services=['nosuchservice']), 'no file of its own'),
    (dict(state_dir='relative/dir'), 'absolute path'),
    (dict(interface='pam_tcl'), 'value of interface must be one of'),
    (dict(ensure_access_for=['root', 'nosuchuser-xyz']), 'nosuchuser-xyz is not a user of the tree'),
    (dict(ensure_access_for=['root', 'alice']), 'access_rules deny alice'),
    (dict(admin_access='pam_listfile', ensure_access_for=['hpcadmin']), 'hpcadmin is not in listfile_users'),
    (dict(admin_access='none', ensure_access_for=['hpcadmin']), 'no admin bypass'),
])
def test_bad_parameters_fail_clearly_and_write_nothing(tmp_path, adopt, args, message):
    root = node(tmp_path, 'debian12')
    before = snapshot(root)
    args.setdefault('pam_systemd', 'keep')
    ret = adopt(root, **args)
    assert ret.failed
    assert message in ret.result['msg']
    assert snapshot(root) == before


def test_static_guard_reads_groups_from_the_tree(tmp_path, adopt):
    root = node(tmp_path, 'debian12', users=False)
    # the tree's own users: "bob" is in wheel there (and unknown on this machine)
    add_users(root, passwd='root:x:0:0:root:/root:/bin/bash\nbob:x:1500:1500::/home/bob:/bin/bash\n',
              group='root:x:0:\nwheel:x:10:bob\nbob:x:1500:\n', shadow='root:*:1::::::\nbob:*:1::::::\n')
    ret = adopt(root, ensure_access_for=['root', 'bob'], pam_systemd='keep')
    assert not ret.failed, ret.result
    # bob leaves wheel in the tree: refused, whatever this machine says
    write(root, '/etc/group', 'root:x:0:\nwheel:x:10:\nbob:x:1500:\n')
    rules = ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
    ret = adopt(root, ensure_access_for=['root', 'bob'], pam_systemd='keep', access_rules=rules)
    assert ret.failed and 'access_rules deny bob (groups: bob)' in ret.result['msg']


def test_access_allows():
    rules = ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
    assert pe.access_allows(rules, 'alice', set(['wheel'])) is True
    assert pe.access_allows(rules, 'bob', set(['users'])) is False
    assert pe.access_allows(rules, 'root', set()) is True
    assert pe.access_allows(['+:alice:LOCAL', '-:ALL:ALL'], 'alice', set()) is None
    assert pe.access_allows(['-:ALL EXCEPT root:ALL'], 'root', set()) is None


def test_short_circuit_policies(tmp_path, adopt):
    root = node(tmp_path, 'rocky8')
    before = snapshot(root)
    ret = adopt(root, short_circuits='fail', pam_systemd='keep')
    assert ret.failed and 'pam_localuser.so' in ret.result['msg'] and 'short_circuits=fail' in ret.result['msg']
    assert snapshot(root) == before
    ret = adopt(root, short_circuits='warn', pam_systemd='keep')
    assert not ret.failed, ret.result
    # kept: the include stays, and the probe check reports that ordinary users still get in
    assert any('pam_localuser' in w for w in ret.result['warnings'])
    assert any('lets an ordinary user without a job in' in w for w in ret.result['warnings'])
    assert 'account    include      password-auth\n' in read(root, '/etc/pam.d/sshd')
    ret = adopt(root, pam_systemd='keep')          # transform (the default) changes the file
    assert ret.result['changed'] and 'account substack password-auth' in read(root, '/etc/pam.d/sshd')
    ret = adopt(root, pam_systemd='keep', short_circuits='disable')     # the old name of transform
    assert not ret.failed and not ret.result['changed']


def test_pam_systemd_keep_leaves_it_and_still_adopts(tmp_path, adopt, info):
    root = node(tmp_path, 'ubuntu2204')
    ret = adopt(root, pam_systemd='keep')
    assert not ret.failed, ret.result
    assert ret.result['changed'] and ret.result['disabled'] == []
    assert 'hpc.slurm_adopt' not in read(root, '/etc/pam.d/common-session')
    assert 'session\toptional\tpam_systemd.so' in read(root, '/etc/pam.d/common-session')
    health = info(root, adopt_match='managed')
    assert health['adopt_last']
    assert [p['module'] for p in health['pam_systemd']] == ['pam_systemd.so']
    ret = adopt(root)
    assert not ret.failed, ret.result
    text = read(root, '/etc/pam.d/common-session')
    assert '#hpc.slurm_adopt:pam_systemd# session\toptional\tpam_systemd.so' in text
    assert info(root)['pam_systemd'] == []


def test_pam_systemd_and_elogind_replaced_in_every_reachable_file_and_type(tmp_path, adopt, info):
    root = node(tmp_path, 'debian12')
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('-session optional pam_systemd.so\n@include extra\n')
    write(root, '/etc/pam.d/extra', 'auth optional pam_systemd.so\nsession optional /lib/security/pam_systemd.so \\\n'
                                    ' class=x\nsession optional pam_elogind.so\n')
    before = snapshot(root)
    ret = adopt(root).result
    where = sorted((d['file'], d['line'], d['type']) for d in ret['disabled'] if d['classification'] == 'pam_systemd')
    assert where == [('/etc/pam.d/common-session', 24, 'session'), ('/etc/pam.d/extra', 1, 'auth'),
                     ('/etc/pam.d/extra', 2, 'session'), ('/etc/pam.d/extra', 4, 'session'),
                     ('/etc/pam.d/sshd', 56, 'session')]
    assert info(root)['pam_systemd'] == []
    extra = read(root, '/etc/pam.d/extra')
    # a continued line is disabled on every physical line, and each rule has a placeholder of its type
    assert extra.count('#hpc.slurm_adopt:pam_systemd# ') == 3
    assert extra.count('#hpc.slurm_adopt:pam_elogind# ') == 1
    assert extra.count('auth [default=ignore] pam_permit.so # hpc.slurm_adopt:placeholder') == 1
    assert extra.count('session [default=ignore] pam_permit.so # hpc.slurm_adopt:placeholder') == 2
    # the rule count of every stack is unchanged
    src_after = ps.FileSource(root)
    for ptype in ps.PAM_TYPES:
        count = len(ps.effective_stack(src_after, 'login', ptype).entries)
        src_before = ps.FileSource(root, overrides=dict(('/etc/pam.d/' + p.split('/')[-1], v.decode())
                                                        for p, v in before.items() if p.startswith('etc/pam.d/')))
        assert count == len(ps.effective_stack(src_before, 'login', ptype).entries), ptype
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_other_adopt_rules_become_placeholders_and_jumps_keep_their_target(tmp_path, adopt, info):
    # site-admin-jump: "[success=1] ... ingroup admins" jumps over the site's adopt rule to
    # password-auth's first rule; replacing that rule must not move the jump
    root = node(tmp_path, 'rocky9')
    path = os.path.join(root, 'etc/pam.d/sshd')
    text = read(root, '/etc/pam.d/sshd').replace(
        'account    include      password-auth\n',
        'account    [success=1 default=ignore] pam_succeed_if.so user ingroup wheel quiet\n'
        'account    required     pam_slurm_adopt.so\naccount    include      password-auth\n')
    with open(path, 'w') as handle:
        handle.write(text)
    ret = adopt(root, replace_other_adopt_rules=False, pam_systemd='keep')
    assert ret.failed and 'already runs pam_slurm_adopt' in ret.result['msg']
    ret = adopt(root, pam_systemd='keep').result
    assert [d['classification'] for d in ret['disabled']] == ['other_adopt']
    sshd = read(root, '/etc/pam.d/sshd')
    assert ('#hpc.slurm_adopt:other_adopt# account    required     pam_slurm_adopt.so\n'
            'account [default=ignore] pam_permit.so # hpc.slurm_adopt:placeholder\n') in sshd
    stack = ps.effective_stack(ps.FileSource(root), 'sshd', 'account')
    jumper = [i for i, e in enumerate(stack.entries) if e.line.module == 'pam_succeed_if.so'][0]
    landed = stack.entries[stack.next_after(jumper, 1)]
    assert (landed.line.path, landed.line.module) == ('/etc/pam.d/password-auth', 'pam_unix.so')
    assert info(root, adopt_match='any')['adopt_last']
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == text


def test_an_admin_refused_by_an_older_adopt_rule_may_be_let_in(tmp_path, adopt):
    # the site's own adopt rule refused the Ansible user without a job; the admin access rules
    # let it in now: the guard reports that, it is not a lockout
    root = synthetic(tmp_path, {'sshd': 'account required pam_unix.so\naccount required pam_slurm_adopt.so\n'})
    ret = adopt(root)
    assert not ret.failed, ret.result
    assert any('%s was refused by sshd before (account: PAM_PERM_DENIED) and is let in now' % ANSIBLE_USER in w
               for w in ret.result['warnings'])
    assert ret.result['guard']['problems'] == []


def test_service_file_short_circuit_becomes_a_jump_to_the_adopt_block(tmp_path, adopt, info):
    root = synthetic(tmp_path, {
        'sshd': ('auth required pam_unix.so\naccount required pam_nologin.so\n'
                 'account sufficient pam_localuser.so\naccount required pam_unix.so\n'
                 'account [success=ok default=bad] pam_permit.so\nsession required pam_unix.so\n'),
    })
    before = snapshot(root)
    ret = adopt(root)
    assert not ret.failed, ret.result
    sshd = read(root, '/etc/pam.d/sshd')
    assert ('#hpc.slurm_adopt:jump# account sufficient pam_localuser.so\n'
            'account [success=2 new_authtok_reqd=2 default=ignore] pam_localuser.so # hpc.slurm_adopt:jump\n') in sshd
    assert [t['transformation'] for t in ret.result['transformed']] == ['jump']
    stack = ps.effective_stack(ps.FileSource(root), 'sshd', 'account')
    local = [i for i, e in enumerate(stack.entries) if e.line.module == 'pam_localuser.so'][0]
    assert stack.entries[stack.next_after(local, 2)].line.added_tag == 'adopt'
    assert info(root, adopt_match='managed')['problems'] == []
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_a_jump_of_the_service_file_over_a_converted_include_keeps_its_target(tmp_path, adopt):
    root = synthetic(tmp_path, {
        'sshd': ('account [success=2 default=ignore] pam_succeed_if.so user ingroup wheel quiet\n'
                 'account include common-account\naccount required pam_permit.so\n'),
        'common-account': 'account required pam_unix.so\naccount sufficient pam_localuser.so\n',
    })
    ret = adopt(root)
    assert not ret.failed, ret.result
    sshd = read(root, '/etc/pam.d/sshd')
    # before: 2 = common-account's two rules; after: the substack counts once
    assert 'account [success=1 default=ignore] pam_succeed_if.so user ingroup wheel quiet # hpc.slurm_adopt:jump' \
        in sshd
    assert sorted(t['transformation'] for t in ret.result['transformed']) == ['jump_count', 'substack']


def test_a_jump_that_ended_the_stack_now_lands_on_the_adopt_rule(tmp_path, adopt):
    root = synthetic(tmp_path, {
        'sshd': ('account required pam_unix.so\naccount [success=1 default=ignore] pam_succeed_if.so user ingroup '
                 'wheel quiet\naccount required pam_permit.so\n'),
    })
    ret = adopt(root)
    assert not ret.failed, ret.result
    stack = ps.effective_stack(ps.FileSource(root), 'sshd', 'account')
    jumper = [i for i, e in enumerate(stack.entries) if e.line.module == 'pam_succeed_if.so'][0]
    assert stack.entries[stack.next_after(jumper, 1)].line.added_tag == 'adopt'


def test_a_jump_out_of_a_shared_file_is_refused_not_edited(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    path = os.path.join(root, 'etc/pam.d/common-account')
    # a local rule at the end of common-account that jumps beyond its end into sshd
    with open(path, 'a') as handle:
        handle.write('account [success=3 default=ignore] pam_succeed_if.so user ingroup hpc\n')
    before = snapshot(root)
    ret = adopt(root, pam_systemd='keep')
    assert ret.failed
    assert 'jumps (success=3) beyond the end of common-account' in ret.result['msg']
    assert 'account substack common-account' in ret.result['msg']
    assert snapshot(root) == before
    ret = adopt(root, short_circuits='warn', pam_systemd='keep')
    assert not ret.failed, ret.result
    assert read(root, '/etc/pam.d/common-account') == before['etc/pam.d/common-account'].decode()


def test_file_without_final_newline_round_trips(tmp_path, adopt):
    root = node(tmp_path, 'rocky9')
    path = os.path.join(root, 'etc/pam.d/sshd')
    text = ('#%PAM-1.0\nauth       substack     password-auth\naccount    required     pam_nologin.so\n'
            'account    include      password-auth')
    with open(path, 'w') as handle:
        handle.write(text)
    ret = adopt(root, admin_access='none', pam_systemd='keep', ensure_access_for=['root'])
    assert not ret.failed, ret.result
    # the line that lacked its newline was replaced: the replacement carries the mark that removal
    # must take the newline away again
    assert '# hpc.slurm_adopt:substack+eofnl\n' in read(root, '/etc/pam.d/sshd')
    assert pe.unmark(read(root, '/etc/pam.d/sshd')) == text
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == text


def test_absent_after_local_edit_removes_only_our_lines(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root)
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('session optional pam_local_admin.so\n')
    ret = adopt(root, state='absent').result
    assert any('changed since it was written' in w for w in ret['warnings'])
    assert read(root, '/etc/pam.d/sshd') == orig + 'session optional pam_local_admin.so\n'
    assert '/etc/pam.d/common-session' in ret['restored']


def test_present_after_local_edit_keeps_the_edit_in_the_original(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root, pam_systemd='keep')
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('session optional pam_env.so\n')
    ret = adopt(root, admin_access='pam_listfile', listfile_users=['root', ANSIBLE_USER], pam_systemd='keep')
    assert not ret.failed, ret.result
    assert not os.path.exists(os.path.join(root, ACCESS.lstrip('/')))    # the old mode's file went away
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == orig + 'session optional pam_env.so\n'
    assert not os.path.exists(os.path.join(root, 'etc/security/slurm-adopt-allowed-users'))


def test_absent_without_state_dir_removes_marks(tmp_path, adopt):
    root = node(tmp_path, 'ubuntu2404')
    before = snapshot(root)
    adopt(root)
    os.unlink(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json'))
    ret = adopt(root, state='absent').result
    assert ret['changed'] and any('no stored original' in w for w in ret['warnings'])
    after = snapshot(root)
    # the access file is ours but, without the manifest, nothing says it did not exist before: it stays
    assert after.pop(ACCESS.lstrip('/')).startswith(b'# hpc.slurm_adopt')
    assert after == before


def test_migrates_the_block_older_versions_left_in_access_conf(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    conf = '# site rules\n+:hpcadmin:ALL\n'
    write(root, '/etc/security/access.conf', conf)
    # what 0.1 wrote: a marked block at the end of the shared file, recorded in the manifest
    old = conf + ('# BEGIN hpc.slurm_adopt admin access for pam_slurm_adopt (managed by Ansible)\n+:root:ALL\n'
                  '-:ALL:ALL\n# END hpc.slurm_adopt\n')
    write(root, '/etc/security/access.conf', old)
    write(root, '/var/lib/slurm-adopt/pam/originals/etc/security/access.conf', conf)
    write(root, '/var/lib/slurm-adopt/pam/manifest.json', json.dumps({'version': 1, 'files': {
        '/etc/security/access.conf': {'kind': 'access', 'original_absent': False, 'original_sha256': pe.sha256(conf),
                                      'written_sha256': pe.sha256(old)}}}))
    ret = adopt(root, pam_systemd='keep')
    assert not ret.failed, ret.result
    assert read(root, '/etc/security/access.conf') == conf
    assert read(root, ACCESS).endswith('+:root:ALL\n+:wheel:ALL\n-:ALL:ALL\n')
    with open(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json')) as handle:
        assert '/etc/security/access.conf' not in json.load(handle)['files']
    # the same without a manifest (state directory lost): the marked block is still removed
    root2 = node(tmp_path / 'two', 'debian12')
    write(root2, '/etc/security/access.conf', old)
    ret = adopt(root2, pam_systemd='keep')
    assert not ret.failed and read(root2, '/etc/security/access.conf') == conf


def test_refuses_an_access_file_that_is_not_ours(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    write(root, ACCESS, '+:ALL:ALL\n')
    ret = adopt(root, pam_systemd='keep')
    assert ret.failed and 'was not written by hpc.slurm_adopt' in ret.result['msg']


def test_several_services_need_the_service_option(tmp_path, adopt, info):
    root = node(tmp_path, 'debian12')
    before = snapshot(root)
    # the adopt module acts only for options.service (sshd): in "login" it answers PAM_IGNORE, and a
    # required adopt rule after login's own rules lets everyone in there
    ret = adopt(root, services=['sshd', 'login'], pam_systemd='keep', admin_access='pam_listfile',
                listfile_users=['root', ANSIBLE_USER])
    assert ret.failed
    assert 'lets an ordinary user without a job in' in ret.result['msg'] and 'through: login' in ret.result['msg']
    assert snapshot(root) == before
    # with pam_access nobody gets in without admin access there (jobs or not): a warning says so
    ret = adopt(root, services=['sshd', 'login'], pam_systemd='keep')
    assert not ret.failed, ret.result
    assert any('acts only for service=sshd' in w and 'only the administrators get in' in w
               for w in ret.result['warnings'])
    ret = adopt(root, services=['sshd', 'login'], pam_systemd='keep', options={'service': '*'})
    assert not ret.failed, ret.result
    assert not any('acts only for service' in w for w in ret.result['warnings'])
    assert sorted(ret.result['files']) == ['/etc/pam.d/login', '/etc/pam.d/sshd']
    assert info(root, service='login', adopt_match='managed')['adopt_last']
    # dropping a service from the list puts its file back
    ret = adopt(root, services=['sshd'], pam_systemd='keep', options={'service': '*'})
    assert not ret.failed, ret.result['msg']
    assert ret.result['files'] == ['/etc/pam.d/login']
    assert snapshot(root)['etc/pam.d/login'] == before['etc/pam.d/login']
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_symlinked_files_are_written_through_the_link(tmp_path, adopt):
    root = node(tmp_path, 'rocky9')
    pamd = os.path.join(root, 'etc/pam.d')
    os.makedirs(os.path.join(root, 'etc/authselect'))
    os.rename(os.path.join(pamd, 'password-auth'), os.path.join(root, 'etc/authselect/password-auth'))
    os.symlink('/etc/authselect/password-auth', os.path.join(pamd, 'password-auth'))
    before = snapshot(root)
    ret = adopt(root)
    assert not ret.failed, ret.result
    assert os.readlink(os.path.join(pamd, 'password-auth')) == '/etc/authselect/password-auth'
    assert 'placeholder' in read(root, '/etc/authselect/password-auth')
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_generated_files_are_refused_with_the_command_to_run(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    before = snapshot(root)
    ret = adopt(root, generated_files='refuse')
    assert ret.failed and '/etc/pam.d/common-session is generated by pam-auth-update' in ret.result['msg']
    assert 'pam-auth-update --disable systemd' in ret.result['msg']
    root = node(tmp_path / 'rh', 'rocky9')
    ret = adopt(root, generated_files='refuse')
    assert ret.failed and 'generated by authselect' in ret.result['msg'] and 'create-profile' in ret.result['msg']
    # nothing generated needs to change: the service file alone is fine
    assert not adopt(root, generated_files='refuse', pam_systemd='keep').failed
    root = synthetic(tmp_path / 'suse', {
        'sshd': 'account include common-account\nsession include common-session\n',
        'common-account-pc': ('# This file is autogenerated by pam-config. All changes will be overwritten.\n'
                              'account requisite pam_unix.so try_first_pass\n'
                              'account sufficient pam_localuser.so\naccount required pam_sss.so use_first_pass\n'),
        'common-session-pc': ('# This file is autogenerated by pam-config. All changes will be overwritten.\n'
                              'session optional pam_systemd.so\nsession required pam_unix.so\n'),
    })
    for name in ('common-account', 'common-session'):
        os.symlink(name + '-pc', os.path.join(root, 'etc/pam.d', name))
    ret = adopt(root, generated_files='refuse')
    assert ret.failed and 'pam-config --delete --systemd' in ret.result['msg']
    ret = adopt(root, generated_files='refuse', pam_systemd='keep')
    assert not ret.failed, ret.result
    assert read(root, '/etc/pam.d/common-account-pc').count('hpc.slurm_adopt') == 0


def test_a_vendor_service_file_is_copied_and_the_copy_edited(tmp_path, adopt):
    root = synthetic(tmp_path, {
        'common-account': 'account requisite pam_unix.so\naccount sufficient pam_localuser.so\n'
                          'account required pam_sss.so\n',
    }, vendor={'sshd': 'auth include common-auth\naccount include common-account\n'})
    write(root, '/etc/pam.d/common-auth', 'auth required pam_unix.so\n')
    before = snapshot(root, below=('etc', 'usr'))
    ret = adopt(root)
    assert not ret.failed, ret.result
    assert ret.result['copied'] == [['/usr/lib/pam.d/sshd', '/etc/pam.d/sshd']]
    assert any('vendor file' in w for w in ret.result['warnings'])
    assert read(root, '/usr/lib/pam.d/sshd') == 'auth include common-auth\naccount include common-account\n'
    assert 'account substack common-account' in read(root, '/etc/pam.d/sshd')
    assert not adopt(root).result['changed']
    adopt(root, state='absent')
    assert snapshot(root, below=('etc', 'usr')) == before


@pytest.mark.parametrize('rule, login_defs, directory_uid_min, message', [
    ('account sufficient pam_succeed_if.so uid < 1000 quiet', 'UID_MIN 500\n', None, 'pam_succeed_if.so uid < 1000'),
    ('account sufficient pam_succeed_if.so uid < 1000 quiet', None, 500, 'directory_uid_min 500'),
    ('account sufficient pam_usertype.so issystem', 'UID_MIN 500\nSYS_UID_MAX 999\n', None, 'SYS_UID_MAX'),
    ('account sufficient pam_listfile.so item=user sense=allow onerr=succeed file=/fsx/admins', None, None,
     'onerr=succeed'),
    ('account sufficient pam_listfile.so item=user sense=deny onerr=fail file=/etc/ssh/denied', None, None,
     'pam_listfile.so'),
    ('account sufficient pam_access.so accessfile=/etc/security/site.conf', None, None, 'pam_access.so'),
])
def test_kept_bypass_rules_that_fail_open_are_refused(tmp_path, adopt, rule, login_defs, directory_uid_min, message):
    root = synthetic(tmp_path, {'sshd': 'account required pam_unix.so\n%s\naccount required pam_permit.so\n' % rule})
    if login_defs:
        write(root, '/etc/login.defs', login_defs)
    write(root, '/etc/ssh/denied', 'baduser\n')
    write(root, '/fsx/admins', 'root\n')      # there today: only the static check sees the risk
    write(root, '/etc/security/site.conf', '+:ALL:ALL\n-:ALL:ALL\n')
    before = snapshot(root)
    kwargs = {'directory_uid_min': directory_uid_min} if directory_uid_min else {}
    ret = adopt(root, **kwargs)
    assert ret.failed, ret.result
    assert message in ret.result['msg']
    assert snapshot(root) == before


@pytest.mark.parametrize('rule', ['account sufficient pam_succeed_if.so uid < 1000 quiet',
                                  'account sufficient pam_usertype.so issystem',
                                  'account sufficient pam_succeed_if.so user ingroup wheel',
                                  'account sufficient pam_listfile.so item=user sense=allow onerr=fail '
                                  'file=/etc/security/admins'])
def test_sound_bypass_rules_are_kept(tmp_path, adopt, info, rule):
    root = synthetic(tmp_path, {'sshd': 'account required pam_unix.so\n%s\naccount required pam_permit.so\n' % rule})
    write(root, '/etc/security/admins', 'root\n')
    ret = adopt(root)
    assert not ret.failed, ret.result
    assert [k['text'] for k in ret.result['kept']] == [rule]
    assert info(root, adopt_match='managed')['fail_open'] == []


def test_real_libpam_guard_refuses_what_the_static_check_cannot_see(tmp_path, adopt):
    # the service file's only account rule is "sufficient pam_permit": it becomes a jump to a
    # required adopt rule (admin_access=none), which answers PAM_IGNORE for root: the stack then
    # ends with no positive answer and libpam refuses root
    root = synthetic(tmp_path, {'sshd': 'account sufficient pam_permit.so\n'})
    before = snapshot(root)
    ret = adopt(root, admin_access='none', ensure_access_for=['root'])
    assert ret.failed
    assert 'lockout guard (real libpam' in ret.result['msg']
    assert 'root would be DENIED by sshd (account: PAM_PERM_DENIED; before: PAM_SUCCESS)' in ret.result['msg']
    assert snapshot(root) == before


def test_lockout_guard_static_is_an_explicit_opt_out(tmp_path, adopt, monkeypatch):
    root = node(tmp_path, 'debian12')
    monkeypatch.setattr(pe, 'evaluator_ready', lambda: 'the real-libpam check needs root')
    before = snapshot(root)
    ret = adopt(root, pam_systemd='keep')
    assert ret.failed and 'the lockout guard cannot run: the real-libpam check needs root' in ret.result['msg']
    assert 'lockout_guard=static' in ret.result['msg']
    assert snapshot(root) == before
    ret = adopt(root, pam_systemd='keep', lockout_guard='static')
    assert not ret.failed and ret.result['guard'] == {'mode': 'static'}
    assert any('not run through the real libpam' in w for w in ret.result['warnings'])


# --------------------------------------------------------------------------
# The editor's own safety nets


def _flaky_writer(fail_at):
    """A writer that fails on the ``fail_at``-th write of a live file (not
    the stored originals, not the manifest)."""
    live = []

    def write(path, content, template_stat=None):
        if '/var/lib/slurm-adopt/' not in path:
            live.append(path)
            if len(live) == fail_at:
                raise OSError('disk full')
        pe.atomic_write(path, content, template_stat)
    write.live = live
    return write


@pytest.mark.parametrize('fail_at', [2, 3])
def test_write_failure_rolls_back_files_already_written(tmp_path, fail_at):
    root = node(tmp_path, 'debian12')
    before = snapshot(root, below=('etc',))
    params = params_for(root)
    plan = pe.plan_present(params)
    # three live files: common-session, sshd, and the access file, which does not exist yet
    assert plan.changed_paths() == ['/etc/pam.d/common-session', '/etc/pam.d/sshd', ACCESS]
    assert plan.old[ACCESS] is None
    writer = _flaky_writer(fail_at)
    with pytest.raises(OSError):
        pe.commit(params, plan, 'present', writer=writer)
    # the failing write came after at least one live file was written
    assert len(writer.live) >= fail_at and writer.live[0] == '%s/etc/pam.d/common-session' % root
    assert snapshot(root, below=('etc',)) == before
    assert not os.path.exists(os.path.join(root, ACCESS.lstrip('/')))


def test_write_failure_through_the_module_restores_and_says_so(tmp_path, adopt, monkeypatch):
    root = node(tmp_path, 'debian12')
    before = snapshot(root, below=('etc',))
    calls = []
    real = pam_adopt.AnsibleModule.atomic_move

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        if '/var/lib/slurm-adopt/' not in dest:
            calls.append(dest)
            if len(calls) == 3:       # the access file, new: the two PAM files were written before
                raise OSError('disk full')
        return real(self, src, dest, unsafe_writes=unsafe_writes, keep_dest_attrs=keep_dest_attrs)

    monkeypatch.setattr(pam_adopt.AnsibleModule, 'atomic_move', atomic_move)
    ret = adopt(root)
    assert ret.failed
    assert 'writing failed, files already written were restored: disk full' in ret.result['msg']
    assert [c.split(root)[1] for c in calls] == ['/etc/pam.d/common-session', '/etc/pam.d/sshd', ACCESS,
                                                 '/etc/pam.d/sshd', '/etc/pam.d/common-session']
    assert snapshot(root, below=('etc',)) == before


def test_module_writer_keeps_mode_and_owner_and_leaves_no_temp_files(tmp_path, adopt, monkeypatch):
    root = node(tmp_path, 'debian12')
    sshd = os.path.join(root, 'etc/pam.d/sshd')
    os.chmod(sshd, 0o640)
    os.chown(sshd, 0, 4)
    moves = []
    real = pam_adopt.AnsibleModule.atomic_move

    def atomic_move(self, src, dest, unsafe_writes=False, keep_dest_attrs=True):
        moves.append(dest)
        return real(self, src, dest, unsafe_writes=unsafe_writes, keep_dest_attrs=keep_dest_attrs)

    monkeypatch.setattr(pam_adopt.AnsibleModule, 'atomic_move', atomic_move)
    assert not adopt(root, pam_systemd='keep').failed
    assert sshd in moves                      # written through AnsibleModule.atomic_move
    st = os.stat(sshd)
    assert oct(st.st_mode & 0o777) == '0o640' and (st.st_uid, st.st_gid) == (0, 4)
    assert oct(os.stat(os.path.join(root, ACCESS.lstrip('/'))).st_mode & 0o777) == '0o644'
    assert not [n for n in os.listdir(os.path.dirname(sshd)) if n.endswith('.tmp')]


def test_atomic_write_keeps_mode_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / 'f'
    target.write_text('old\n')
    os.chmod(str(target), 0o640)
    pe.atomic_write(str(target), 'new\n')
    assert target.read_text() == 'new\n'
    assert oct(os.stat(str(target)).st_mode & 0o777) == '0o640'
    assert os.listdir(str(tmp_path)) == ['f']


@pytest.mark.parametrize('damage', ['missing', 'corrupt'])
def test_absent_with_a_missing_or_corrupt_original_removes_only_our_lines(tmp_path, adopt, damage):
    root = node(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root, pam_systemd='keep')
    stored = os.path.join(root, 'var/lib/slurm-adopt/pam/originals/etc/pam.d/sshd')
    if damage == 'missing':
        os.unlink(stored)
    else:
        with open(stored, 'w') as handle:
            handle.write('account sufficient pam_permit.so\n')      # what an attacker or a bad disk left
    ret = adopt(root, state='absent').result
    assert any('/etc/pam.d/sshd: stored original is missing or corrupt' in w for w in ret['warnings'])
    assert '/etc/pam.d/sshd' not in ret['restored']
    # our lines are gone and the rest is the original: never the damaged copy
    assert read(root, '/etc/pam.d/sshd') == orig


def test_manifest_records_originals(tmp_path, adopt):
    root = node(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root, pam_systemd='keep')
    with open(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json')) as handle:
        manifest = json.load(handle)
    meta = manifest['files']['/etc/pam.d/sshd']
    assert meta['original_sha256'] == pe.sha256(orig)
    assert meta['written_sha256'] == pe.sha256(read(root, '/etc/pam.d/sshd'))
    assert read(root, '/var/lib/slurm-adopt/pam/originals/etc/pam.d/sshd') == orig
    assert manifest['files'][ACCESS] == {'kind': 'access', 'original_absent': True, 'original_sha256': None,
                                         'written_sha256': pe.sha256(read(root, ACCESS))}


def test_unmark_is_the_inverse_of_every_edit():
    text = ('account required pam_unix.so\n'
            'account sufficient pam_localuser.so \\\n  extra\n'
            'session optional pam_systemd.so')
    pf = ps.parse(text, '/etc/pam.d/x')
    edit = pe.FileEdit(pf)
    edit.set(pf.lines[1], 'jump', 'account [success=1 default=ignore] pam_localuser.so extra # hpc.slurm_adopt:jump')
    edit.set(pf.lines[2], 'pam_systemd', 'session [default=ignore] pam_permit.so # hpc.slurm_adopt:placeholder')
    edit.insert_after = 1
    edit.insert_text = 'account required pam_x.so # hpc.slurm_adopt:adopt\n'
    edited, origin = edit.render()
    assert edited.count('#hpc.slurm_adopt:') == 3
    assert [ln.kind for ln in ps.parse(edited).lines].count('rule') == 4
    assert pe.unmark(edited) == text
    # every physical line knows the original line it stands for (None: the adopt block)
    assert origin == [1, None, 2, 2, 2, 4, 4]


@pytest.mark.parametrize('modules, expected', [
    (('pam_python.so', 'pam_exec.so', 'pam_access.so'), 'pam_python'),
    (('pam_exec.so', 'pam_access.so'), 'pam_exec'),
    (('pam_exec.so', 'pam_access.so', 'pam_slurm_adopt_client.so'), 'service'),
    (('pam_python.so', 'pam_exec.so', 'pam_access.so', 'pam_slurm_adopt_client.so'), 'pam_python'),
])
def test_interface_auto(tmp_path, adopt, modules, expected):
    root = node(tmp_path, 'debian13', modules=modules)
    ret = adopt(root, interface='auto', pam_systemd='keep')
    assert not ret.failed, ret.result
    assert ret.result['interface'] == expected
    assert MODULE_OF[expected] in ret.result['adopt_rule']


# --------------------------------------------------------------------------
# pam_stack_info


def test_stack_info_on_an_untouched_rocky_node(tmp_path, info):
    root = node(tmp_path, 'rocky9')
    res = info(root, service='sshd')
    assert res['service_file'] == '/etc/pam.d/sshd'
    assert res['files'] == ['/etc/pam.d/sshd', '/etc/pam.d/password-auth', '/etc/pam.d/postlogin']
    assert res['adopt_rule'] is None and not res['adopt_last']
    assert [(s['file'], s['line'], s['classification']) for s in res['short_circuits']] == [
        ('/etc/pam.d/password-auth', 14, 'short_circuit')]
    assert res['short_circuits'][0]['include_chain'] == [{'file': '/etc/pam.d/sshd', 'line': 6, 'via': 'include'}]
    assert [(k['line'], k['classification']) for k in res['kept_terminators']] == [(15, 'system_users')]
    assert [(p['file'], p['line'], p['dash']) for p in res['pam_systemd']] == [('/etc/pam.d/password-auth', 26, True)]
    assert any('no pam_slurm_adopt rule' in p for p in res['problems'])
    assert [r['module'] for r in res['stack']] == ['pam_sepermit.so', 'pam_nologin.so', 'pam_unix.so',
                                                   'pam_localuser.so', 'pam_usertype.so', 'pam_sss.so',
                                                   'pam_permit.so']
    auth = info(root, service='sshd', type='auth')['stack']
    assert auth[0]['module'] == 'password-auth' and auth[0]['entry'] == 'substack'
    assert set(r['substack_depth'] for r in auth if r['file'] == '/etc/pam.d/password-auth') == set([1])


def test_stack_info_sees_a_hand_written_adopt_rule(tmp_path, info):
    root = node(tmp_path, 'debian12')
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('account required pam_slurm_adopt.so action_no_jobs=deny\n')
    res = info(root, service='sshd')
    assert res['adopt_last'] and res['adopt_rule']['module'] == 'pam_slurm_adopt.so'
    # common-account's new_authtok_reqd=done still ends the stack before it (included, not a substack)
    assert res['problems'] == [
        '/etc/pam.d/common-account:17 can end the account stack before pam_slurm_adopt (new_authtok_reqd=done)',
        'pam_systemd is active at /etc/pam.d/common-session:24']
    assert not info(root, service='sshd', adopt_match='managed')['adopt_last']


@pytest.mark.parametrize('damage, state, message', [
    ('missing', 'missing', 'pam_access aborts'),
    ('empty', 'fail_open', 'admits an ordinary user'),
    ('puppet', 'fail_open', 'not what pam_adopt wrote'),
])
def test_stack_info_reports_a_missing_or_rewritten_access_file(tmp_path, adopt, info, damage, state, message):
    root = node(tmp_path, 'debian12')
    assert not adopt(root, pam_systemd='keep').failed
    assert info(root)['admin_access'] == {'mode': 'pam_access', 'file': ACCESS, 'state': 'ok', 'problems': []}
    path = os.path.join(root, ACCESS.lstrip('/'))
    if damage == 'missing':
        os.unlink(path)
    elif damage == 'empty':
        open(path, 'w').close()
    else:
        with open(path, 'w') as handle:       # a configuration manager's idea of access rules
            handle.write('+:ALL:LOCAL\n+:ALL:ALL\n')
    res = info(root)
    assert res['admin_access']['state'] == state
    assert any(message in p for p in res['problems']), res['problems']


def test_stack_info_probe_asks_the_real_libpam(tmp_path, adopt, info):
    root = node(tmp_path, 'rocky9')
    res = info(root, probe=True)
    # untouched: pam_localuser lets the probe (a local user without a job) in
    assert res['probe']['let_in'] and res['probe']['name'] == pg.PROBE_USER
    assert any('the real libpam lets an ordinary user without a job' in p for p in res['problems'])
    assert not adopt(root, pam_systemd='keep').failed
    res = info(root, probe=True)
    assert res['probe']['let_in'] is False


def test_pam_systemd_services_clear_more_files(tmp_path, adopt):
    root = node(tmp_path, 'rocky8')
    before = snapshot(root)
    ret = adopt(root, pam_systemd_services=['system-auth', 'systemd-user']).result
    files = sorted(set(d['file'] for d in ret['disabled'] if d['classification'] == 'pam_systemd'))
    assert files == ['/etc/pam.d/password-auth', '/etc/pam.d/system-auth']
    assert 'pam_systemd' in read(root, '/etc/pam.d/system-auth').split('#hpc.slurm_adopt:pam_systemd# ')[1]
    assert 'hpc.slurm_adopt' not in read(root, '/etc/pam.d/systemd-user')   # no adopt rule there
    assert adopt(root, pam_systemd_services=['nosuch']).failed
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_a_jump_that_would_move_is_refused_by_the_post_condition(tmp_path, monkeypatch):
    # the safety net behind _repair_jumps: with the repair broken on purpose, the jump over the
    # converted include would land on the adopt block instead of pam_permit; the check refuses
    root = synthetic(tmp_path, {
        'sshd': ('account [success=2 default=ignore] pam_succeed_if.so user ingroup wheel quiet\n'
                 'account include common-account\naccount required pam_permit.so\n'),
        'common-account': 'account required pam_unix.so\naccount sufficient pam_localuser.so\n',
    })
    monkeypatch.setattr(pe, '_repair_jumps', lambda planner, contents, origins, alias: (contents, origins))
    with pytest.raises(pe.PlanError) as err:
        pe.plan_present(params_for(root))
    assert ('/etc/pam.d/sshd:1 (account stack of sshd): the jump of success would land on the adopt block in '
            '/etc/pam.d/sshd instead of /etc/pam.d/sshd:3') in str(err.value)
