"""pam_adopt (module + module_utils/pam_edit) on real distribution trees:
placement, short-circuits, pam_systemd, admin access, idempotence, check
mode/diff, lockout guards, atomic writes with rollback and byte-identical
removal."""

import json
import os

import pytest

from conftest import DISTROS, make_root, snapshot
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import pam_edit as pe
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import pam_stack as ps
from ansible_collections.hpc.slurm_adopt.plugins.modules import pam_adopt, pam_stack_info

SCRIPT = '/usr/lib/slurm-adopt/pam_slurm_adopt.py'


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


@pytest.fixture
def adopt(monkeypatch):
    def call(root, check=False, diff=False, **kwargs):
        kwargs['root'] = root
        ret = run_module(pam_adopt, kwargs, check=check, diff=diff, monkeypatch=monkeypatch)
        return ret
    return call


@pytest.fixture
def info(monkeypatch):
    def call(root, **kwargs):
        kwargs['root'] = root
        ret = run_module(pam_stack_info, kwargs, monkeypatch=monkeypatch)
        assert not ret.failed, ret.result
        return ret.result
    return call


def read(root, path):
    with open(os.path.join(root, path.lstrip('/'))) as handle:
        return handle.read()


MODES = [
    ('pam_python', 'pam_access'),
    ('pam_python', 'pam_listfile'),
    ('pam_exec', 'pam_access'),
    ('pam_exec', 'none'),
]


@pytest.mark.parametrize('distro', DISTROS)
@pytest.mark.parametrize('interface, admin', MODES)
def test_present_idempotent_and_absent_restores_byte_identical(tmp_path, adopt, info, distro, interface, admin):
    root = make_root(tmp_path, distro)
    before = snapshot(root)
    first = adopt(root, interface=interface, admin_access=admin)
    assert not first.failed, first.result
    assert first.result['changed']
    assert '/etc/pam.d/sshd' in first.result['files']

    health = info(root, service='sshd', adopt_match='managed')
    assert health['adopt_last'], health['problems']
    assert health['problems'] == []
    assert health['pam_systemd'] == []
    assert health['short_circuits'] == []
    last = [r for r in health['stack'] if r['managed']]
    if admin == 'pam_access':
        assert [r['module'] for r in last] == [('pam_python.so' if interface == 'pam_python' else 'pam_exec.so'),
                                               'pam_access.so']
        assert last[0]['control'] == 'sufficient'
        assert '-:ALL:ALL' in read(root, '/etc/security/access.conf')
    elif admin == 'pam_listfile':
        assert [r['module'] for r in last][0] == 'pam_listfile.so'
        assert last[1]['control'] == 'required'
        assert read(root, '/etc/security/slurm-adopt-allowed-users') == 'root\n'
    else:
        assert len(last) == 1 and last[0]['control'] == 'required'
    # every managed rule sits in the service's own file
    assert set(r['file'] for r in last) == set(['/etc/pam.d/sshd'])

    written = snapshot(root)
    second = adopt(root, interface=interface, admin_access=admin)
    assert not second.failed and not second.result['changed'], second.result
    assert snapshot(root) == written

    gone = adopt(root, state='absent')
    assert not gone.failed and gone.result['changed']
    assert gone.result['warnings'] == []
    assert snapshot(root) == before
    assert not os.path.exists(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json'))
    assert not adopt(root, state='absent').result['changed']


def test_exact_rule_shapes(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    ret = adopt(root, admin_access='none', options={'action_adopt_failure': 'deny', 'action_generic_failure': 'deny'})
    assert ret.result['adopt_rule'] == ('account required pam_python.so %s action_adopt_failure=deny '
                                        'action_generic_failure=deny' % SCRIPT)
    assert ret.result['adopt_rule'] + ' # hpc.slurm_adopt:adopt\n' in read(root, '/etc/pam.d/sshd')
    ret = adopt(root, admin_access='none', interface='pam_exec', dash=True,
                options={'action_adopt_failure': 'deny'}, pam_exec_env={'SLURM_CONF': '/etc/slurm/slurm.conf'})
    assert ret.result['changed']
    assert ret.result['adopt_rule'] == (
        '-account required pam_exec.so stdout quiet /usr/bin/env SLURM_CONF=/etc/slurm/slurm.conf '
        '/usr/bin/python3 %s pam-exec action_adopt_failure=deny' % SCRIPT)
    text = read(root, '/etc/pam.d/sshd')
    assert text.count('hpc.slurm_adopt:adopt') == 1   # the old rule was replaced, not duplicated


def test_debian_placement_after_common_account(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    adopt(root)
    lines = read(root, '/etc/pam.d/sshd').splitlines()
    idx = lines.index('@include common-account')
    assert lines[idx + 1].startswith('account sufficient pam_python.so')
    assert lines[idx + 2].startswith('account required pam_access.so')


def test_rocky_disables_localuser_keeps_system_users(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky9')
    ret = adopt(root).result
    dis = [(d['file'], d['line'], d['classification']) for d in ret['disabled']]
    assert ('/etc/pam.d/password-auth', 14, 'short_circuit') in dis
    assert ('/etc/pam.d/password-auth', 26, 'pam_systemd') in dis
    assert [(k['line'], k['classification']) for k in ret['kept']] == [(15, 'system_users')]
    text = read(root, '/etc/pam.d/password-auth')
    assert '#hpc.slurm_adopt:short_circuit# account     sufficient' in text
    assert 'account     sufficient                                   pam_usertype.so issystem\n' in text
    lines = read(root, '/etc/pam.d/sshd').splitlines()
    assert lines[lines.index('account    include      password-auth') + 1].startswith('account sufficient')


def test_check_mode_writes_nothing_and_diffs_each_file(tmp_path, adopt):
    root = make_root(tmp_path, 'debian13')
    before = snapshot(root)
    ret = adopt(root, check=True, diff=True)
    assert ret.result['changed']
    assert snapshot(root) == before
    assert not os.path.exists(os.path.join(root, 'var/lib/slurm-adopt'))
    diffs = dict((d['after_header'], d) for d in ret.result['diff'])
    assert sorted(diffs) == ['/etc/pam.d/common-session', '/etc/pam.d/sshd', '/etc/security/access.conf']
    assert 'pam_systemd' in diffs['/etc/pam.d/common-session']['before']
    assert '#hpc.slurm_adopt:pam_systemd# session' in diffs['/etc/pam.d/common-session']['after']


def test_check_mode_on_a_node_without_the_module_warns(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12', modules=('pam_access.so',), script=False)
    ret = adopt(root, check=True, interface='pam_python')
    assert not ret.failed and ret.result['changed']
    assert any('pam_python.so' in w and SCRIPT in w and 'check mode' in w for w in ret.result['warnings'])
    ret = adopt(root, interface='pam_python')
    assert ret.failed and 'missing on the node' in ret.result['msg']


@pytest.mark.parametrize('missing, dash', [('pam_python.so', False), ('script', False), ('script', True)])
def test_refuses_rules_whose_module_is_missing(tmp_path, adopt, missing, dash):
    modules = ('pam_access.so',) if missing == 'pam_python.so' else ('pam_python.so', 'pam_access.so')
    root = make_root(tmp_path, 'debian12', modules=modules, script=(missing != 'script'))
    before = snapshot(root, below=('etc', 'var'))
    ret = adopt(root, dash=dash, interface='pam_python')
    assert ret.failed
    assert 'missing on the node' in ret.result['msg']
    assert snapshot(root, below=('etc', 'var')) == before


def test_dash_form_tolerates_a_missing_so(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12', modules=('pam_access.so',))
    ret = adopt(root, dash=True, interface='pam_python')
    assert not ret.failed, ret.result
    assert '-account sufficient pam_python.so' in read(root, '/etc/pam.d/sshd')


@pytest.mark.parametrize('args, message', [
    (dict(control='required'), 'control=required with admin_access=pam_access'),
    (dict(control='sufficient', admin_access='pam_listfile'), 'lets every user in'),
    (dict(control='sufficient', admin_access='none'), 'lets every user in'),
    (dict(options={'action_no_job': 'deny'}), 'unknown pam_slurm_adopt option'),
    (dict(options={'nodename': 'a b'}), 'no blanks'),
    (dict(options={'nodename': 'x#y'}), 'no blanks'),
    (dict(access_rules=['root:ALL']), 'is not "+|-:users:origins"'),
    (dict(services=['../etc/passwd']), 'not a PAM service name'),
    (dict(services=[]), 'at least one'),
    (dict(services=['nosuchservice']), 'no file of its own'),
    (dict(state_dir='relative/dir'), 'absolute path'),
    (dict(interface='pam_tcl'), 'value of interface must be one of'),
    (dict(ensure_access_for=['root', 'nosuchuser-xyz']), 'lockout guard'),
    (dict(admin_access='pam_listfile', ensure_access_for=['hpcadmin']), 'hpcadmin is not in listfile_users'),
    (dict(admin_access='none', ensure_access_for=['hpcadmin']), 'no admin bypass'),
])
def test_bad_parameters_fail_clearly_and_write_nothing(tmp_path, adopt, args, message):
    root = make_root(tmp_path, 'debian12')
    before = snapshot(root)
    ret = adopt(root, **args)
    assert ret.failed
    assert message in ret.result['msg']
    assert snapshot(root) == before


def test_lockout_guard_uses_group_membership():
    rules = ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
    assert pe.access_allows(rules, 'alice', set(['wheel'])) is True
    assert pe.access_allows(rules, 'bob', set(['users'])) is False
    assert pe.access_allows(rules, 'root', set()) is True
    assert pe.access_allows(['+:alice:LOCAL', '-:ALL:ALL'], 'alice', set()) is None
    assert pe.access_allows(['-:ALL EXCEPT root:ALL'], 'root', set()) is None


def test_short_circuit_policies(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky8')
    ret = adopt(root, short_circuits='fail')
    assert ret.failed and 'pam_localuser.so' in ret.result['msg']
    ret = adopt(root, short_circuits='warn')
    assert not ret.failed
    assert any('pam_localuser' in w for w in ret.result['warnings'])
    assert 'short_circuit' not in read(root, '/etc/pam.d/password-auth')
    ret = adopt(root)          # switching to disable changes the file
    assert ret.result['changed'] and 'short_circuit' in read(root, '/etc/pam.d/password-auth')


def test_pam_systemd_keep(tmp_path, adopt):
    root = make_root(tmp_path, 'ubuntu2204')
    adopt(root, pam_systemd='keep')
    assert 'hpc.slurm_adopt' not in read(root, '/etc/pam.d/common-session')
    adopt(root)
    assert '#hpc.slurm_adopt:pam_systemd# session\toptional\tpam_systemd.so' in read(root, '/etc/pam.d/common-session')


def test_pam_systemd_disabled_in_every_reachable_file_and_type(tmp_path, adopt, info):
    root = make_root(tmp_path, 'debian12')
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('-session optional pam_systemd.so\n@include extra\n')
    with open(os.path.join(root, 'etc/pam.d/extra'), 'w') as handle:
        handle.write('auth optional pam_systemd.so\nsession optional /lib/security/pam_systemd.so \\\n class=x\n')
    before = snapshot(root)
    ret = adopt(root).result
    where = sorted((d['file'], d['line']) for d in ret['disabled'] if d['classification'] == 'pam_systemd')
    # line numbers are those of the file as written (two managed lines were inserted above)
    assert where == [('/etc/pam.d/common-session', 24), ('/etc/pam.d/extra', 1), ('/etc/pam.d/extra', 2),
                     ('/etc/pam.d/sshd', 58)]
    assert info(root)['pam_systemd'] == []
    # a continued line is disabled on every physical line
    assert read(root, '/etc/pam.d/extra').count('#hpc.slurm_adopt:pam_systemd# ') == 3
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_other_adopt_rules_are_replaced_and_restored(tmp_path, adopt, info):
    root = make_root(tmp_path, 'debian12')
    path = os.path.join(root, 'etc/pam.d/sshd')
    with open(path) as handle:
        text = handle.read()
    text = text.replace('@include common-account\n', '-account required pam_slurm_adopt.so\n@include common-account\n')
    with open(path, 'w') as handle:
        handle.write(text)
    ret = adopt(root, replace_other_adopt_rules=False)
    assert ret.failed and 'already runs pam_slurm_adopt' in ret.result['msg']
    ret = adopt(root).result
    assert [d['classification'] for d in ret['disabled']].count('other_adopt') == 1
    assert info(root, adopt_match='any')['adopt_last']
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == text


def test_file_without_final_newline_round_trips(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky9')
    path = os.path.join(root, 'etc/pam.d/sshd')
    text = ('#%PAM-1.0\nauth       substack     password-auth\naccount    required     pam_nologin.so\n'
            'account    include      password-auth')
    with open(path, 'w') as handle:
        handle.write(text)
    adopt(root, admin_access='none')
    assert read(root, '/etc/pam.d/sshd').endswith('# hpc.slurm_adopt:adopt+eofnl\n')
    assert pe.unmark(read(root, '/etc/pam.d/sshd')) == text
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == text


def test_absent_after_local_edit_removes_only_our_lines(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root)
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('session optional pam_local_admin.so\n')
    ret = adopt(root, state='absent').result
    assert any('changed since it was written' in w for w in ret['warnings'])
    assert read(root, '/etc/pam.d/sshd') == orig + 'session optional pam_local_admin.so\n'
    assert '/etc/pam.d/common-session' in ret['restored']


def test_present_after_local_edit_keeps_the_edit_in_the_original(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root)
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('session optional pam_local_admin.so\n')
    adopt(root, admin_access='pam_listfile')
    adopt(root, state='absent')
    assert read(root, '/etc/pam.d/sshd') == orig + 'session optional pam_local_admin.so\n'
    assert not os.path.exists(os.path.join(root, 'etc/security/slurm-adopt-allowed-users'))
    assert not os.path.exists(os.path.join(root, 'etc/security/access.conf'))


def test_absent_without_state_dir_removes_marks(tmp_path, adopt):
    root = make_root(tmp_path, 'ubuntu2404')
    before = snapshot(root)
    adopt(root)
    os.unlink(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json'))
    ret = adopt(root, state='absent').result
    assert ret['changed'] and any('no stored original' in w for w in ret['warnings'])
    # access.conf did not exist before: the block is gone, an empty file stays
    after = snapshot(root)
    assert after.pop('etc/security/access.conf') == b''
    assert after == before


def test_existing_access_conf_keeps_its_content(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    os.makedirs(os.path.join(root, 'etc/security'))
    conf = '# site rules\n+:hpcadmin:ALL\n'
    with open(os.path.join(root, 'etc/security/access.conf'), 'w') as handle:
        handle.write(conf)
    adopt(root, access_rules=['+:root:ALL', '+:sudo:ALL', '-:ALL:ALL'])
    text = read(root, '/etc/security/access.conf')
    assert text.startswith(conf) and '+:sudo:ALL\n' in text and text.endswith('# END hpc.slurm_adopt\n')
    assert not adopt(root, access_rules=['+:root:ALL', '+:sudo:ALL', '-:ALL:ALL']).result['changed']
    adopt(root, access_rules=['+:root:ALL', '-:ALL:ALL'])
    assert '+:sudo:ALL' not in read(root, '/etc/security/access.conf')
    adopt(root, state='absent')
    assert read(root, '/etc/security/access.conf') == conf


def test_access_file_other_than_default_uses_accessfile(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    adopt(root, access_file='/etc/security/access-slurm-adopt.conf')
    assert 'pam_access.so accessfile=/etc/security/access-slurm-adopt.conf #' in read(root, '/etc/pam.d/sshd')
    assert '-:ALL:ALL' in read(root, '/etc/security/access-slurm-adopt.conf')


def test_several_services_share_included_files(tmp_path, adopt, info):
    root = make_root(tmp_path, 'debian12')
    before = snapshot(root)
    ret = adopt(root, services=['sshd', 'login']).result
    assert sorted(ret['files']) == ['/etc/pam.d/common-session', '/etc/pam.d/login', '/etc/pam.d/sshd',
                                    '/etc/security/access.conf']
    assert info(root, service='login', adopt_match='managed')['adopt_last']
    # dropping a service from the list puts its file back
    ret = adopt(root, services=['sshd']).result
    assert ret['files'] == ['/etc/pam.d/login']
    assert snapshot(root)['etc/pam.d/login'] == before['etc/pam.d/login']
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_symlinked_files_are_written_through_the_link(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky9')
    pamd = os.path.join(root, 'etc/pam.d')
    os.makedirs(os.path.join(root, 'etc/authselect'))
    os.rename(os.path.join(pamd, 'password-auth'), os.path.join(root, 'etc/authselect/password-auth'))
    os.symlink('/etc/authselect/password-auth', os.path.join(pamd, 'password-auth'))
    before = snapshot(root)
    adopt(root)
    assert os.readlink(os.path.join(pamd, 'password-auth')) == '/etc/authselect/password-auth'
    assert 'short_circuit' in read(root, '/etc/authselect/password-auth')
    adopt(root, state='absent')
    assert snapshot(root) == before


def test_write_failure_rolls_back_files_already_written(tmp_path):
    root = make_root(tmp_path, 'debian12')
    before = snapshot(root, below=('etc',))
    spec = pam_adopt.argument_spec()
    params = dict((k, v.get('default')) for k, v in spec.items())
    params.update(root=root, control='sufficient', check_mode=False)
    plan = pe.plan_present(params)
    calls = []

    def flaky(path, content, template_stat=None):
        if '/etc/pam.d/' in path:
            calls.append(path)
            if len(calls) == 2:
                raise OSError('disk full')
        pe.atomic_write(path, content, template_stat)

    with pytest.raises(OSError):
        pe.commit(params, plan, 'present', writer=flaky)
    assert snapshot(root, below=('etc',)) == before


def test_atomic_write_keeps_mode_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / 'f'
    target.write_text('old\n')
    os.chmod(str(target), 0o640)
    pe.atomic_write(str(target), 'new\n')
    assert target.read_text() == 'new\n'
    assert oct(os.stat(str(target)).st_mode & 0o777) == '0o640'
    assert os.listdir(str(tmp_path)) == ['f']


def test_manifest_records_originals(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    orig = read(root, '/etc/pam.d/sshd')
    adopt(root)
    with open(os.path.join(root, 'var/lib/slurm-adopt/pam/manifest.json')) as handle:
        manifest = json.load(handle)
    meta = manifest['files']['/etc/pam.d/sshd']
    assert meta['original_sha256'] == pe.sha256(orig)
    assert meta['written_sha256'] == pe.sha256(read(root, '/etc/pam.d/sshd'))
    assert read(root, '/var/lib/slurm-adopt/pam/originals/etc/pam.d/sshd') == orig


def test_unmark_is_the_inverse_of_every_edit():
    text = ('account required pam_unix.so\n'
            'account sufficient pam_localuser.so \\\n  extra\n'
            'session optional pam_systemd.so')
    pf = ps.parse(text, '/etc/pam.d/x')
    edited = pe._rebuild(pf, disable={id(pf.lines[1]): 'short_circuit', id(pf.lines[2]): 'pam_systemd'},
                         insert_after=1, insert_text='account required pam_x.so # hpc.slurm_adopt:adopt\n')
    assert edited.count('#hpc.slurm_adopt:') == 3
    assert [ln.kind for ln in ps.parse(edited).lines].count('rule') == 2
    assert pe.unmark(edited) == text


@pytest.mark.parametrize('modules, expected', [
    (('pam_python.so', 'pam_exec.so', 'pam_access.so'), 'pam_python'),
    (('pam_exec.so', 'pam_access.so'), 'pam_exec'),
])
def test_interface_auto(tmp_path, adopt, modules, expected):
    root = make_root(tmp_path, 'debian13', modules=modules)
    ret = adopt(root, interface='auto')
    assert not ret.failed, ret.result
    assert ret.result['interface'] == expected
    assert ('%s.so' % expected) in ret.result['adopt_rule']


def test_a_jump_over_the_adopt_rule_is_refused_not_edited(tmp_path, adopt):
    root = make_root(tmp_path, 'debian12')
    path = os.path.join(root, 'etc/pam.d/common-account')
    with open(path) as handle:
        text = handle.read()
    # a local rule at the end of common-account that jumps past the end of the stack
    with open(path, 'a') as handle:
        handle.write('account [success=3 default=ignore] pam_succeed_if.so user ingroup hpc\n')
    before = snapshot(root)
    ret = adopt(root)
    assert ret.failed and 'jumps over the pam_slurm_adopt rule' in ret.result['msg']
    assert snapshot(root) == before
    ret = adopt(root, short_circuits='warn')
    assert not ret.failed
    assert [k['classification'] for k in ret.result['kept']].count('jump_past_adopt') == 1
    assert read(root, '/etc/pam.d/common-account').startswith(text)


def test_stack_info_on_an_untouched_rocky_node(tmp_path, info):
    root = make_root(tmp_path, 'rocky9')
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
    assert auth[0]['module'] == 'password-auth' and auth[0]['substack_depth'] == 0   # the substack line
    assert set(r['substack_depth'] for r in auth if r['file'] == '/etc/pam.d/password-auth') == set([1])


def test_stack_info_sees_a_hand_written_adopt_rule(tmp_path, info):
    root = make_root(tmp_path, 'debian12')
    with open(os.path.join(root, 'etc/pam.d/sshd'), 'a') as handle:
        handle.write('account required pam_slurm_adopt.so action_no_jobs=deny\n')
    res = info(root, service='sshd')
    assert res['adopt_last'] and res['adopt_rule']['module'] == 'pam_slurm_adopt.so'
    assert res['problems'] == [
        'pam_systemd is active at /etc/pam.d/common-session:24']
    assert not info(root, service='sshd', adopt_match='managed')['adopt_last']


def test_warns_when_editing_generated_files(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky9')
    warnings = adopt(root).result['warnings']
    assert any('/etc/pam.d/password-auth is generated by authselect' in w for w in warnings)
    root = make_root(tmp_path / 'deb', 'debian12')
    warnings = adopt(root).result['warnings']
    assert any('/etc/pam.d/common-session is managed by pam-auth-update' in w for w in warnings)
    assert not any('/etc/pam.d/sshd' in w for w in warnings)


def test_pam_systemd_services_clear_more_files(tmp_path, adopt):
    root = make_root(tmp_path, 'rocky8')
    before = snapshot(root)
    ret = adopt(root, pam_systemd_services=['system-auth', 'systemd-user']).result
    files = sorted(set(d['file'] for d in ret['disabled'] if d['classification'] == 'pam_systemd'))
    assert files == ['/etc/pam.d/password-auth', '/etc/pam.d/system-auth']
    assert 'pam_systemd' in read(root, '/etc/pam.d/system-auth').split('#hpc.slurm_adopt:pam_systemd# ')[1]
    assert 'hpc.slurm_adopt' not in read(root, '/etc/pam.d/systemd-user')   # no adopt rule there
    assert adopt(root, pam_systemd_services=['nosuch']).failed
    adopt(root, state='absent')
    assert snapshot(root) == before
