# SPDX-License-Identifier: GPL-3.0-or-later
"""The Linux-PAM parser, resolver and stack analysis (module_utils/_pam_stack)."""

import os

import pytest

from conftest import DISTROS, FIXTURES, make_root  # noqa: F401  (conftest sets sys.path)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_stack as ps


def tree(tmp_path, files):
    pamd = tmp_path / 'etc' / 'pam.d'
    pamd.mkdir(parents=True)
    for name, text in files.items():
        (pamd / name).write_text(text)
    return ps.FileSource(str(tmp_path))


def account(src, service='svc'):
    return [(e.line.path.rsplit('/', 1)[-1], e.line.lineno, e.line.module_name)
            for e in ps.effective_stack(src, service, 'account').entries]


# ---------------------------------------------------------------- lines

def test_hash_anywhere_starts_a_comment():
    pf = ps.parse('account required pam_unix.so foo#bar baz\nsession optional pam_mail.so standard noenv # [1]\n')
    assert pf.lines[0].args == ['foo']
    assert pf.lines[1].args == ['standard', 'noenv']


def test_comment_only_and_blank_lines():
    pf = ps.parse('# a comment\n\n   \t# indented\naccount required pam_permit.so\n')
    assert [ln.kind for ln in pf.lines] == ['comment', 'blank', 'comment', 'rule']


def test_backslash_continuation_joins_physical_lines():
    pf = ps.parse('account \\\n  required \\  \n pam_unix.so a\\\nb\nsession required pam_env.so\n')
    rule = pf.lines[0]
    assert (rule.lineno, rule.end_lineno) == (1, 4)
    assert (rule.type, rule.control, rule.module, rule.args) == ('account', 'required', 'pam_unix.so', ['a', 'b'])
    assert pf.lines[1].lineno == 5


def test_line_with_hash_never_continues():
    # pam_line.c: a physical line containing '#' ends the logical line even if
    # it ends with a backslash, so the next physical line is a rule of its own
    pf = ps.parse('account required pam_unix.so # note \\\naccount required pam_deny.so\n')
    assert [(ln.kind, ln.module) for ln in pf.lines] == [('rule', 'pam_unix.so'), ('rule', 'pam_deny.so')]


def test_blank_line_ending_a_continuation_is_flagged_ambiguous():
    pf = ps.parse('account required \\\n\npam_unix.so\n')
    assert pf.lines[0].ambiguous
    assert pf.lines[0].kind == 'invalid'   # "account required" has no module path


def test_bracketed_control_and_jumps():
    pf = ps.parse('account [success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so \n'
                  'auth [success=done ignore=ignore default=die] pam_sss.so require_cert_auth\n')
    a, b = pf.lines
    # full tables, one action per return value of libpam
    assert (a.actions['success'], a.actions['new_authtok_reqd'], a.actions['user_unknown']) == (1, 'done', 'ignore')
    assert len(a.actions) == len(ps.RETURN_VALUES) == 32
    assert a.keyword is None and a.module == 'pam_unix.so' and a.args == []
    assert b.actions['auth_err'] == 'die' and b.actions['success'] == 'done'
    assert b.actions['ignore'] == 'ignore' and b.args == ['require_cert_auth']


@pytest.mark.parametrize('line, error', [
    ('acount required pam_unix.so', 'unknown module type'),
    ('account required', 'no module path'),
    ('account [success=ok pam_unix.so', 'no module path'),
    ('account include', 'no file name'),
])
def test_broken_lines_always_fail(line, error):
    pf = ps.parse(line + '\n')
    assert pf.lines[0].kind == 'invalid'
    assert error in pf.lines[0].error


@pytest.mark.parametrize('line, error', [
    ('account requird pam_unix.so', 'expecting return value'),     # not a keyword: parsed as an action list
    ('account [sucess=ok] pam_unix.so', 'expecting return value'),
    ('account [success=0] pam_unix.so', 'expecting non-zero'),
    ('account [success] pam_unix.so', 'expecting return value'),
    ('account [success=okay] pam_unix.so', 'expecting return value'),
    ('account [Success=ok default=bad] pam_unix.so', 'expecting return value'),   # case-sensitive
    ('account [success=OK default=bad] pam_unix.so', 'expecting jump number'),
    ('account [success=ok DEFAULT=ignore] pam_unix.so', 'expecting return value'),
])
def test_unparsable_controls_make_every_result_bad(line, error):
    rule = ps.parse(line + '\n').lines[0]
    assert rule.kind == 'rule' and rule.module == 'pam_unix.so'    # the module still runs
    assert error in rule.control_error
    assert set(rule.actions.values()) == set(['bad'])


def test_action_lists_as_libpam_reads_them():
    table, err = ps.parse_control('success = ok  default = ignore')     # blanks around "=" are fine
    assert err is None and table['success'] == 'ok' and table['auth_err'] == 'ignore'
    table, err = ps.parse_control('default=ok default=bad')             # the first default wins
    assert err is None and set(table.values()) == set(['ok'])
    table, err = ps.parse_control('success=ok')                         # unset values are bad
    assert table['success'] == 'ok' and table['user_unknown'] == 'bad'
    table, err = ps.parse_control('success=ok auth_err=2 default=reset')
    assert table['auth_err'] == 2 and table['perm_denied'] == 'reset'
    # an action list without brackets is read the same way
    assert ps.parse('account success=ok pam_x.so\n').lines[0].actions['success'] == 'ok'


@pytest.mark.parametrize('control', ['[success=1 new_authtok_reqd=done default=ignore]', '[default=bad success=ok '
                                     'user_unknown=ignore]', 'sufficient', 'required', '[success=3 default=die]'])
def test_render_control_round_trips(control):
    table = ps.parse('account %s pam_x.so\n' % control).lines[0].actions
    assert ps.parse('account %s pam_x.so\n' % ps.render_control(table)).lines[0].actions == table


def test_dash_types_and_case():
    pf = ps.parse('-session optional pam_systemd.so\nACCOUNT Required pam_unix.so\n')
    assert pf.lines[0].dash and pf.lines[0].type == 'session'
    assert pf.lines[1].type == 'account' and pf.lines[1].keyword == 'required'


def test_bracketed_arguments_keep_blanks_and_escaped_bracket():
    pf = ps.parse('auth required pam_x.so [query=select a from b where c\\]d] plain\n')
    assert pf.lines[0].args == ['query=select a from b where c]d', 'plain']


def test_raw_text_is_kept_byte_for_byte():
    text = 'account\t[success=1 default=ignore]\tpam_unix.so \\\n  x\n# c\n\nsession optional pam_x.so'
    assert ''.join(ln.raw for ln in ps.parse(text).lines) == text


# ---------------------------------------------------------------- includes

def test_include_atinclude_and_substack(tmp_path):
    src = tree(tmp_path, {
        'svc': 'account required pam_a.so\n@include inc1\naccount include inc2\naccount substack sub\n',
        'inc1': 'auth required pam_auth.so\naccount required pam_b.so\n',
        'inc2': 'account required pam_c.so\nsession required pam_s.so\n',
        'sub': 'account sufficient pam_d.so\n',
    })
    stack = ps.effective_stack(src, 'svc', 'account')
    # the substack line itself is an entry: it is one rule of the parent stack
    assert [e.line.module for e in stack.entries] == ['pam_a.so', 'pam_b.so', 'pam_c.so', 'sub', 'pam_d.so']
    assert [e.substack_depth for e in stack.entries] == [0, 0, 0, 0, 1]
    assert stack.entries[3].line.keyword == 'substack'
    assert [c.lineno for c in stack.entries[1].chain] == [2]
    assert stack.files == ['/etc/pam.d/svc', '/etc/pam.d/inc1', '/etc/pam.d/inc2', '/etc/pam.d/sub']
    # "account include" splices only account rules: inc2's session rule is not reached
    assert ps.effective_stack(src, 'svc', 'session').entries == []
    assert ps.reachable_files(src, 'svc') == stack.files


def test_sufficient_inside_substack_only_ends_the_substack(tmp_path):
    src = tree(tmp_path, {
        'svc': 'account substack sub\naccount include inc\naccount required pam_python.so /x/pam_slurm_adopt.py\n',
        'sub': 'account sufficient pam_localuser.so\n',
        'inc': 'account sufficient pam_permit.so\n',
    })
    result = ps.analyse_account(ps.effective_stack(src, 'svc', 'account'))
    assert result['adopt_last']
    # only the one reached through include ends the whole stack
    assert [(t['file'], t['classification']) for t in result['terminators']] == [('/etc/pam.d/inc', 'short_circuit')]
    assert result['terminators'][0]['include_chain'][0]['via'] == 'include'


def test_jump_over_the_adopt_rule_is_a_short_circuit(tmp_path):
    src = tree(tmp_path, {
        'svc': ('account [success=1 default=ignore] pam_unix.so\naccount requisite pam_deny.so\n'
                'account [success=2 default=ignore] pam_x.so\naccount required pam_permit.so\n'
                'account required pam_slurm_adopt.so\n'),
    })
    result = ps.analyse_account(ps.effective_stack(src, 'svc', 'account'))
    assert [(t['line'], t['classification']) for t in result['terminators']] == [(3, 'jump_past_adopt')]


def test_a_substack_counts_as_one_rule_for_jumps(tmp_path):
    src = tree(tmp_path, {
        'svc': ('account [success=1 default=ignore] pam_x.so\naccount substack sub\n'
                'account required pam_python.so /x/pam_slurm_adopt.py\n'),
        'sub': 'account required pam_a.so\naccount required pam_b.so\n',
    })
    result = ps.analyse_account(ps.effective_stack(src, 'svc', 'account'))
    assert result['adopt_last'] and result['terminators'] == []   # lands on the adopt rule
    src = tree(tmp_path / 'two', {
        'svc': ('account [success=2 default=ignore] pam_x.so\naccount substack sub\n'
                'account required pam_python.so /x/pam_slurm_adopt.py\n'),
        'sub': 'account required pam_a.so\naccount required pam_b.so\n',
    })
    result = ps.analyse_account(ps.effective_stack(src, 'svc', 'account'))
    assert [t['classification'] for t in result['terminators']] == ['jump_past_adopt']


def test_missing_include_and_loops_are_errors(tmp_path):
    src = tree(tmp_path, {
        'svc': 'account include nothere\n-account include alsonot\n@include loop\n',
        'loop': '@include loop\n',
    })
    stack = ps.effective_stack(src, 'svc', 'account')
    assert any('nothere' in e for e in stack.errors)
    assert any('alsonot' in e for e in stack.errors)   # "-" does not help: libpam fails the stack too
    assert any('loop' in e for e in stack.errors)
    assert [m[0] for m in stack.missing] == ['nothere', 'alsonot']
    # each missing include is a rule that always fails, at its place
    assert [e.kind for e in stack.entries][:2] == ['must_fail', 'must_fail']


def test_missing_atinclude_aborts_every_type(tmp_path):
    src = tree(tmp_path, {'svc': '@include nothere\naccount required pam_permit.so\n'})
    for ptype in ps.PAM_TYPES:
        stack = ps.effective_stack(src, 'svc', ptype)
        assert stack.aborts and stack.errors


def test_atinclude_is_case_insensitive(tmp_path):
    src = tree(tmp_path, {'svc': '@INCLUDE inc\n', 'inc': 'account required pam_permit.so\n'})
    stack = ps.effective_stack(src, 'svc', 'account')
    assert not stack.errors and [e.line.module for e in stack.entries] == ['pam_permit.so']


def test_unknown_type_breaks_auth_at_the_top_and_the_including_type_below(tmp_path):
    src = tree(tmp_path, {'svc': 'acount required pam_permit.so\naccount required pam_permit.so\n'
                                 'account include inc\n',
                          'inc': 'sesion required pam_permit.so\naccount required pam_permit.so\n'})
    # measured: libpam files a line of unknown type under "auth" when it reads a file for
    # every type (service file, @include), under the include's type otherwise
    assert ps.effective_stack(src, 'svc', 'auth').errors
    account = ps.effective_stack(src, 'svc', 'account')
    assert [e.kind for e in account.entries] == ['rule', 'must_fail', 'rule']
    assert not ps.effective_stack(src, 'svc', 'session').errors


def test_broken_rules_count_for_jumps(tmp_path):
    src = tree(tmp_path, {'svc': 'account [success=2 default=ignore] pam_permit.so\naccount substack nothere\n'
                                 'account required pam_deny.so\naccount required pam_permit.so\n'})
    stack = ps.effective_stack(src, 'svc', 'account')
    # the substack handler and the failing rule for the missing file are two rules
    # (real libpam: the jump lands on pam_deny)
    assert [e.kind for e in stack.entries] == ['rule', 'substack', 'must_fail', 'rule', 'rule']
    assert stack.entries[stack.next_after(0, 2)].line.module == 'pam_deny.so'


def test_jump_landings(tmp_path):
    src = tree(tmp_path, {
        'svc': ('account [success=1 default=ignore] pam_a.so\naccount substack sub\naccount required pam_b.so\n'
                'account [success=1 default=ignore] pam_c.so\naccount required pam_d.so\n'),
        'sub': 'account [success=1 default=ignore] pam_s1.so\naccount [success=2 default=ignore] pam_s2.so\n'})
    stack = ps.effective_stack(src, 'svc', 'account')
    names = [e.line.module for e in stack.entries]
    assert names == ['pam_a.so', 'sub', 'pam_s1.so', 'pam_s2.so', 'pam_b.so', 'pam_c.so', 'pam_d.so']
    assert names[stack.next_after(0, 1)] == 'pam_b.so'          # the substack is one rule
    assert stack.next_after(2, 1) == 4                          # end of the substack: the parent goes on
    assert stack.next_after(3, 2) is None                       # past the substack's end: "bad jump"
    assert stack.next_after(5, 1) == len(stack.entries)         # exactly the end of the stack
    assert stack.next_after(5, 2) is None                       # past it: the stack fails


def test_blank_or_comment_line_inside_a_continuation_is_ambiguous(tmp_path):
    for text in ('account required pam_x.so \\\n\n  arg\n', 'account required pam_x.so \\\n# c\n  arg\n'):
        pf = ps.parse(text)
        assert pf.lines[0].ambiguous, text
    src = tree(tmp_path, {'svc': 'account required pam_x.so \\\n# c\n  arg\n'})
    assert ps.effective_stack(src, 'svc', 'account').ambiguous


def test_service_without_file_uses_other(tmp_path):
    src = tree(tmp_path, {'other': 'account required pam_deny.so\n'})
    assert ps.effective_stack(src, 'nosuch', 'account').path == '/etc/pam.d/other'


def test_vendor_dir_fallback(tmp_path):
    src = tree(tmp_path, {'svc': 'account include vend\n'})
    (tmp_path / 'usr' / 'lib' / 'pam.d').mkdir(parents=True)
    (tmp_path / 'usr' / 'lib' / 'pam.d' / 'vend').write_text('account required pam_v.so\n')
    assert account(src) == [('vend', 1, 'pam_v.so')]


def test_symlinks_resolve_inside_root(tmp_path):
    src = tree(tmp_path, {'svc': 'account include system-auth\n'})
    (tmp_path / 'etc' / 'authselect').mkdir()
    (tmp_path / 'etc' / 'authselect' / 'system-auth').write_text('account required pam_in_root.so\n')
    os.symlink('/etc/authselect/system-auth', str(tmp_path / 'etc' / 'pam.d' / 'system-auth'))
    assert account(src) == [('system-auth', 1, 'pam_in_root.so')]


# ---------------------------------------------------------------- classification

@pytest.mark.parametrize('rule, expected', [
    ('account sufficient pam_localuser.so', 'short_circuit'),
    ('account sufficient pam_permit.so', 'short_circuit'),
    ('account [success=done default=ignore] pam_sss.so', 'short_circuit'),
    ('account [default=done] pam_x.so', 'short_circuit'),
    ('account [success=ok ignore=done default=bad] pam_x.so', 'short_circuit'),
    ('account sufficient pam_succeed_if.so uid < 1000 quiet', 'system_users'),
    ('account sufficient pam_succeed_if.so uid <= 999', 'system_users'),
    ('account sufficient pam_succeed_if.so uid < 60000', 'system_users'),   # whom it admits: the probe check
    ('account sufficient pam_succeed_if.so uid < 1000 user != x', 'short_circuit'),
    ('account sufficient pam_usertype.so issystem', 'system_users'),
    ('account sufficient pam_listfile.so item=user sense=allow file=/x', 'admin_bypass'),
    ('account sufficient pam_succeed_if.so user ingroup wheel', 'admin_bypass'),
    ('account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so', 'expired_password'),
    ('account required pam_unix.so', None),
    ('account [default=bad success=ok user_unknown=ignore] pam_sss.so', None),
    ('account requisite pam_deny.so', None),
])
def test_classification(rule, expected):
    found = ps.classify_terminator(ps.parse(rule + '\n').lines[0])
    assert (found[0] if found else None) == expected


# ---------------------------------------------------------------- real trees

EXPECTED_SHORT = {
    'debian12': [], 'debian13': [], 'ubuntu2204': [], 'ubuntu2404': [],
    'rocky8': [('/etc/pam.d/password-auth', 14)], 'rocky9': [('/etc/pam.d/password-auth', 14)],
}
EXPECTED_SYSTEMD = {
    'debian12': ['/etc/pam.d/common-session'], 'debian13': ['/etc/pam.d/common-session'],
    'ubuntu2204': ['/etc/pam.d/common-session'], 'ubuntu2404': ['/etc/pam.d/common-session'],
    'rocky8': ['/etc/pam.d/password-auth'], 'rocky9': ['/etc/pam.d/password-auth'],
}


@pytest.mark.parametrize('distro', DISTROS)
def test_fixture_trees_parse_cleanly(tmp_path, distro):
    root = make_root(tmp_path, distro)
    src = ps.FileSource(root)
    for name in os.listdir(os.path.join(FIXTURES, distro)):
        assert src.load('/etc/pam.d/' + name).invalid() == [], name
    for ptype in ps.PAM_TYPES:
        assert ps.effective_stack(src, 'sshd', ptype).errors == []
    stack = ps.effective_stack(src, 'sshd', 'account')
    result = ps.analyse_account(stack)
    assert result['adopt_index'] is None
    shorts = [(t['file'], t['line']) for t in result['terminators'] if t['classification'] == 'short_circuit']
    assert shorts == EXPECTED_SHORT[distro]
    files = ps.reachable_files(src, 'sshd')
    systemd = sorted(set(ln.path for ln in ps.find_module_lines(src, files, 'pam_systemd.so')))
    assert systemd == EXPECTED_SYSTEMD[distro]


def test_debian_sshd_account_stack_origin(tmp_path):
    src = ps.FileSource(make_root(tmp_path, 'debian12'))
    stack = ps.effective_stack(src, 'sshd', 'account')
    assert [(e.line.module, e.line.path) for e in stack.entries] == [
        ('pam_nologin.so', '/etc/pam.d/sshd'),
        ('pam_unix.so', '/etc/pam.d/common-account'),
        ('pam_deny.so', '/etc/pam.d/common-account'),
        ('pam_permit.so', '/etc/pam.d/common-account')]
    assert stack.entries[1].to_dict()['include_chain'] == [{'file': '/etc/pam.d/sshd', 'line': 14, 'via': '@include'}]


def test_rocky_sshd_auth_goes_through_a_substack(tmp_path):
    src = ps.FileSource(make_root(tmp_path, 'rocky9'))
    stack = ps.effective_stack(src, 'sshd', 'auth')
    depths = set((e.line.path, e.substack_depth) for e in stack.entries)
    assert ('/etc/pam.d/password-auth', 1) in depths and ('/etc/pam.d/postlogin', 0) not in depths
