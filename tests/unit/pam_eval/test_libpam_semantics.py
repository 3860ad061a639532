# SPDX-License-Identifier: GPL-3.0-or-later
"""The Linux-PAM semantics the editor relies on, asked of the real libpam.

Every case is a service in one tree (its included files are named after
it).  The expectations were observed with the evaluator on Debian 12's
Linux-PAM 1.5.2 and on Debian sid's 1.7.0 (image-root mode, the pam-corpus
sid chroot); where the two differ, the case says so.

Then, for each point, whether our parser and editor
(plugins/module_utils/_pam_stack.py, pam_edit.py) agree with libpam.  Where
they do not, the agreement test is marked ``xfail(strict=True)`` with the
disagreement in its reason: it turns into a failure (XPASS) once the parser
is fixed, and the mark must then go.

pam_slurm_adopt.so is the stand-in (the adopt rule: it answers
PAM_PERM_DENIED for everyone and leaves a trace line, so that a test can
see whether the stack reached it); pam_elogind.so too.  Every other module
is the real one.
"""

import os

import pytest

import _pam_eval as pe

ADOPT = 'account required pam_slurm_adopt.so\n'
ANSWERS = ('pam_slurm_adopt account * * 6 0 adopt\n'
           'pam_elogind * * * 0 0 site\n')
USERS = ('root', 'pe-local')

# name -> (files {name: text}; the service file is "svc"), op, {user: rc_name}, adopt reached
CASES = {
    # 1. "-" on a missing module: the faulty module answers PAM_MODULE_UNKNOWN
    #    silently; the control decides as for any failure
    'dash_so_required': ({'svc': '-account required pam_pe_missing.so\naccount required pam_permit.so\n'},
                         'account', 'PAM_MODULE_UNKNOWN', None),
    'dash_so_requisite': ({'svc': '-account requisite pam_pe_missing.so\naccount required pam_permit.so\n'},
                          'account', 'PAM_MODULE_UNKNOWN', None),
    'dash_so_sufficient': ({'svc': '-account sufficient pam_pe_missing.so\naccount required pam_deny.so\n'},
                           'account', 'PAM_AUTH_ERR', None),
    'dash_so_optional': ({'svc': '-account optional pam_pe_missing.so\naccount required pam_permit.so\n'},
                         'account', 'PAM_SUCCESS', None),
    'dash_so_in_include': ({'svc': 'account include dash_so_in_include-inc\n',
                            'dash_so_in_include-inc': '-account required pam_pe_missing.so\n'
                                                      'account required pam_permit.so\n'},
                           'account', 'PAM_MODULE_UNKNOWN', None),
    'nodash_so_required': ({'svc': 'account required pam_pe_missing.so\naccount required pam_permit.so\n'},
                           'account', 'PAM_MODULE_UNKNOWN', None),
    # 2. "-" on a missing include/substack file: the whole stack fails
    'dash_include_missing': ({'svc': '-account include pe-missing-file\naccount required pam_permit.so\n'},
                             'account', 'PAM_PERM_DENIED', None),
    'dash_substack_missing': ({'svc': '-account substack pe-missing-file\naccount required pam_permit.so\n'},
                              'account', 'PAM_PERM_DENIED', None),
    'include_missing': ({'svc': 'account include pe-missing-file\naccount required pam_permit.so\n'},
                        'account', 'PAM_PERM_DENIED', None),
    # 3. case: types, control keywords, include/@include are case-insensitive;
    #    the words inside brackets are not: such a rule always fails
    'type_upper': ({'svc': 'ACCOUNT required pam_permit.so\n'}, 'account', 'PAM_SUCCESS', None),
    'keyword_upper_required': ({'svc': 'account REQUIRED pam_deny.so\naccount required pam_permit.so\n'},
                               'account', 'PAM_AUTH_ERR', None),
    'keyword_upper_sufficient': ({'svc': 'account Sufficient pam_permit.so\naccount required pam_deny.so\n'},
                                 'account', 'PAM_SUCCESS', None),
    'include_upper': ({'svc': 'account Include include_upper-inc\n',
                       'include_upper-inc': 'account required pam_permit.so\n'}, 'account', 'PAM_SUCCESS', None),
    'atinclude_upper': ({'svc': '@INCLUDE atinclude_upper-inc\n',
                         'atinclude_upper-inc': 'account required pam_permit.so\n'}, 'account', 'PAM_SUCCESS', None),
    'bracket_value_upper': ({'svc': 'account [Success=ok default=bad] pam_permit.so\n'},
                            'account', 'PAM_PERM_DENIED', None),
    'bracket_action_upper': ({'svc': 'account [success=OK default=bad] pam_permit.so\n'},
                             'account', 'PAM_PERM_DENIED', None),
    'bracket_default_upper': ({'svc': 'account [success=ok DEFAULT=ignore] pam_deny.so\n'
                                      'account required pam_permit.so\n'}, 'account', 'PAM_AUTH_ERR', None),
    # ... and it is the rule that fails, not the stack: a sufficient success before it still wins
    'bracket_error_after_sufficient': ({'svc': 'account sufficient pam_permit.so\n'
                                               'account [Success=ok default=bad] pam_permit.so\n'},
                                       'account', 'PAM_SUCCESS', None),
    # 4. pam_elogind is a module like any other: it runs in the session stack
    'elogind_session': ({'svc': 'session optional pam_elogind.so\nsession required pam_permit.so\n'},
                        'open_session', 'PAM_SUCCESS', None),
    # 5. jumps: out of an include into the including file; not out of a substack
    'jump_include_leaves': ({'svc': 'account include jump_include_leaves-inc\n' + ADOPT +
                                    'account required pam_permit.so\n',
                             'jump_include_leaves-inc': 'account [success=1 default=ignore] pam_permit.so\n'},
                            'account', 'PAM_SUCCESS', False),
    'jump_substack_stays': ({'svc': 'account substack jump_substack_stays-inc\n' + ADOPT +
                                    'account required pam_permit.so\n',
                             'jump_substack_stays-inc': 'account [success=1 default=ignore] pam_permit.so\n'},
                            'account', 'PAM_PERM_DENIED', True),
    # 6. sufficient/done inside an include end the whole stack; inside a substack only the substack
    'sufficient_include': ({'svc': 'account include sufficient_include-inc\n' + ADOPT,
                            'sufficient_include-inc': 'account sufficient pam_permit.so\n'},
                           'account', 'PAM_SUCCESS', False),
    'sufficient_substack': ({'svc': 'account substack sufficient_substack-inc\n' + ADOPT,
                             'sufficient_substack-inc': 'account sufficient pam_permit.so\n'},
                            'account', 'PAM_PERM_DENIED', True),
    'done_substack': ({'svc': 'account substack done_substack-inc\n' + ADOPT,
                       'done_substack-inc': 'account [success=done default=bad] pam_permit.so\n'},
                      'account', 'PAM_PERM_DENIED', True),
    # 7. a substack's result, seen by the parent: like a required rule (a
    #    failure sticks, a "die"/requisite inside does not end the parent)
    'die_substack': ({'svc': 'account substack die_substack-inc\n' + ADOPT + 'account required pam_permit.so\n',
                      'die_substack-inc': 'account [success=ok default=die] pam_deny.so\n'},
                     'account', 'PAM_AUTH_ERR', True),
    'requisite_substack': ({'svc': 'account substack requisite_substack-inc\n' + ADOPT,
                            'requisite_substack-inc': 'account requisite pam_deny.so\n'},
                           'account', 'PAM_AUTH_ERR', True),
    'failed_substack_sticks': ({'svc': 'account substack failed_substack_sticks-inc\n'
                                       'account sufficient pam_permit.so\n',
                                'failed_substack_sticks-inc': 'account required pam_deny.so\n'},
                               'account', 'PAM_AUTH_ERR', None),
    'requisite_include': ({'svc': 'account include requisite_include-inc\n' + ADOPT,
                           'requisite_include-inc': 'account requisite pam_deny.so\n'},
                          'account', 'PAM_AUTH_ERR', False),
    # 8. @include splices every type of the file; only this type's lines run
    'atinclude_types': ({'svc': '@include atinclude_types-inc\n',
                         'atinclude_types-inc': 'auth required pam_deny.so\naccount required pam_permit.so\n'
                                                'session required pam_deny.so\n'}, 'account', 'PAM_SUCCESS', None),
    # 9. unknown return values / actions / a zero jump in brackets: the rule always fails;
    #    an unknown type: the line is ignored; no module: the whole stack fails
    'unknown_value': ({'svc': 'account [success=ok frobnicate=bad default=bad] pam_permit.so\n'},
                      'account', 'PAM_PERM_DENIED', None),
    'unknown_action': ({'svc': 'account [success=okay default=bad] pam_permit.so\n'},
                       'account', 'PAM_PERM_DENIED', None),
    'jump_zero': ({'svc': 'account [success=0 default=bad] pam_permit.so\n'}, 'account', 'PAM_PERM_DENIED', None),
    'unknown_type_ignored': ({'svc': 'acount required pam_deny.so\naccount required pam_permit.so\n'},
                             'account', 'PAM_SUCCESS', None),
    'no_module': ({'svc': 'account required\naccount required pam_permit.so\n'}, 'account', 'PAM_PERM_DENIED', None),
    'all_ignore': ({'svc': 'account [default=ignore] pam_deny.so\n'}, 'account', 'PAM_PERM_DENIED', None),
    # 10. continuation lines and comments
    'continuation': ({'svc': 'account required pam_succeed_if.so \\\n  user = root\n'},
                     'account', {'root': 'PAM_SUCCESS', 'pe-local': 'PAM_AUTH_ERR'}, None),
    'hash_line_does_not_continue': ({'svc': 'account required pam_permit.so # note \\\naccount required pam_deny.so\n'},
                                    'account', 'PAM_AUTH_ERR', None),
    'comment_mid_word': ({'svc': 'account required pam_succeed_if.so user = root#tail\n'},
                         'account', {'root': 'PAM_SUCCESS', 'pe-local': 'PAM_AUTH_ERR'}, None),
    'comment_trailing': ({'svc': 'account required pam_succeed_if.so user = root # tail\n'},
                         'account', {'root': 'PAM_SUCCESS', 'pe-local': 'PAM_AUTH_ERR'}, None),
    # 1.5.2 skips a blank line inside a continuation; 1.7.0 ends the line there
    # (then "user = pe-local" is a line of unknown type, ignored)
    'continuation_blank': ({'svc': 'account required pam_succeed_if.so \\\n\n  user = pe-local\n'},
                           'account', {'1.5': {'root': 'PAM_AUTH_ERR', 'pe-local': 'PAM_SUCCESS'},
                                       '1.7': {'root': 'PAM_SUCCESS', 'pe-local': 'PAM_SUCCESS'}}, None),
}


def expected(case, version):
    want = CASES[case][2]
    if isinstance(want, dict) and '1.5' in want:
        want = want[version]
    if isinstance(want, str):
        want = dict((u, want) for u in USERS)
    return want


def build_tree(base):
    pamd = os.path.join(base, 'etc', 'pam.d')
    os.makedirs(pamd)
    for case, (files, _op, _want, _adopt) in CASES.items():
        for name, text in files.items():
            with open(os.path.join(pamd, case if name == 'svc' else name), 'w') as handle:
                handle.write(text)
    return base


def run_cases(tree, standin, root=None):
    queries = [{'service': case, 'user': user, 'op': CASES[case][1], 'labels': case}
               for case in CASES for user in USERS]
    out = pe.evaluate(queries, tree=tree, root=root, probe_users=[{'name': 'pe-local', 'uid': 1502}],
                      module_overlay={'pam_slurm_adopt.so': standin, 'pam_elogind.so': standin},
                      files={'answers': ANSWERS})
    table = {}
    for res in out['results']:
        table[(res['query']['labels'], res['query']['user'])] = res
    return out, table


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return build_tree(str(tmp_path_factory.mktemp('semantics')))


@pytest.fixture(scope='module')
def host(tree, standin):
    return run_cases(tree, standin)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope='module')
def sid(tree, standin, harness):
    """Debian sid's Linux-PAM 1.7.0: the pam-corpus helper's sid chroot
    (lab/pamcorpus/chroot.sh; built once, cached under /var/cache), or the
    root file system named by PAM_EVAL_SID_ROOT."""
    root = harness.image_root('sid')
    if root is None:
        pytest.skip('lab/pamcorpus/chroot.sh is not in this checkout (branch pam-corpus) and PAM_EVAL_SID_ROOT '
                    'is not set: no sid image to run libpam 1.7.0 in')
    return run_cases(tree, standin, root=root)


def _check(table, version):
    problems = []
    for case, (_files, _op, _want, adopt) in CASES.items():
        for user, rc in sorted(expected(case, version).items()):
            res = table[(case, user)]
            if res['rc_name'] != rc:
                problems.append('%s %s: %s, expected %s' % (case, user, res['rc_name'], rc))
            reached = any(t['module'] == 'pam_slurm_adopt' for t in res['trace'])
            if adopt is not None and reached != adopt:
                problems.append('%s %s: adopt rule %s' % (case, user, 'reached' if reached else 'not reached'))
    return problems


def test_libpam_1_5_answers(host):
    out, table = host
    assert out['python'].startswith('3.11'), 'the host python ran the transactions'
    assert _check(table, '1.5') == []


def test_libpam_1_7_answers_in_the_sid_image(sid):
    """The same on sid's Linux-PAM 1.7.0, run inside the image root with the
    image's own libpam and python (3.14: proves the image's interpreter
    ran; the continuation case proves the image's libpam answered)."""
    out, table = sid
    assert out['python'].startswith('3.14')
    assert _check(table, '1.7') == []


def test_elogind_is_called_like_any_session_module(host):
    _out, table = host
    funcs = [t['function'] for t in table[('elogind_session', 'root')]['trace']]
    assert funcs == ['open_session', 'close_session']


# --------------------------------------------------------------------------
# Does our parser / editor agree?

def _parser(tree):
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_stack as pam_stack
    return pam_stack, pam_stack.FileSource(root=tree)


@pytest.fixture(scope='module')
def parser(tree, harness):
    harness.import_collection()
    return _parser(tree)


def _line(parser, case, ptype='account'):
    pam_stack, src = parser
    return pam_stack.effective_stack(src, case, ptype)


def _terminators(parser, case):
    pam_stack, src = parser
    stack = pam_stack.effective_stack(src, case, 'account')
    return [(t['classification'], t['file'].rsplit('/', 1)[-1]) for t in pam_stack.analyse_account(stack)['terminators']]


@pytest.mark.parametrize('case', ['dash_include_missing', 'dash_substack_missing'])
def test_parser_dash_missing_include_fails_the_stack(parser, host, case):
    assert host[1][(case, 'root')]['rc_name'] == 'PAM_PERM_DENIED'
    assert _line(parser, case).errors, 'effective_stack reports no error for a stack libpam cannot run'


def test_parser_plain_missing_include_fails_the_stack(parser, host):
    assert host[1][('include_missing', 'root')]['rc_name'] == 'PAM_PERM_DENIED'
    assert _line(parser, 'include_missing').errors


def _dash_plan(tmp_path, harness, control):
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pam_edit
    root = harness.stage_tree(str(tmp_path / 'root'), os.path.join(REPO, 'tests', 'fixtures', 'pamd', 'debian12'))
    mode = {'required': dict(admin_access='pam_listfile', listfile_users=['root', harness.CLASSES['ansible']['name']]),
            'sufficient': dict(admin_access='pam_access')}[control]
    # every module and program of the rules is in the staged root, except pam_python.so
    secdir = os.path.join(root, 'lib', 'x86_64-linux-gnu', 'security')
    os.makedirs(secdir)
    for name in ('pam_access.so', 'pam_listfile.so', 'pam_unix.so'):
        open(os.path.join(secdir, name), 'w').close()
    os.makedirs(os.path.join(root, 'usr', 'lib', 'slurm-adopt'))
    open(os.path.join(root, 'usr', 'lib', 'slurm-adopt', 'pam_slurm_adopt.py'), 'w').close()
    # pam_systemd in pam-auth-update's common-session is the generator check's business, not this test's
    params = harness.editor_params(root, dash=True, require_modules=True, control=control, pam_systemd='keep', **mode)
    return pam_edit, params


def test_editor_refuses_a_required_dash_rule_whose_module_is_missing(tmp_path, harness, host):
    assert host[1][('dash_so_required', 'root')]['rc_name'] == 'PAM_MODULE_UNKNOWN'
    pam_edit, params = _dash_plan(tmp_path, harness, 'required')
    with pytest.raises(pam_edit.PlanError, match='pam_python.so'):
        pam_edit.plan_present(params)


def test_editor_accepts_a_sufficient_dash_rule_whose_module_is_missing(tmp_path, harness, host):
    """libpam ignores a missing "-" sufficient (and optional) module: the
    editor's assumption holds there."""
    assert host[1][('dash_so_sufficient', 'root')]['rc_name'] == 'PAM_AUTH_ERR'
    assert host[1][('dash_so_optional', 'root')]['rc_name'] == 'PAM_SUCCESS'
    pam_edit, params = _dash_plan(tmp_path, harness, 'sufficient')
    plan = pam_edit.plan_present(params)
    assert any('pam_python.so is missing' in w for w in plan.warnings)


@pytest.mark.parametrize('case', ['type_upper', 'keyword_upper_required', 'keyword_upper_sufficient', 'include_upper'])
def test_parser_case_insensitive_words(parser, host, case):
    stack = _line(parser, case)
    assert not stack.errors and stack.entries
    assert host[1][(case, 'root')]['rc_name'] == expected(case, '1.5')['root']


def test_parser_atinclude_upper_case(parser, host):
    assert host[1][('atinclude_upper', 'root')]['rc_name'] == 'PAM_SUCCESS'
    stack = _line(parser, 'atinclude_upper')
    assert not stack.errors and [e.line.module for e in stack.entries] == ['pam_permit.so']


@pytest.mark.parametrize('case', ['bracket_value_upper', 'bracket_action_upper', 'bracket_default_upper'])
def test_parser_bracket_words_are_case_sensitive(parser, host, case):
    assert host[1][(case, 'root')]['rc_name'] != 'PAM_SUCCESS'
    pfile = _line(parser, case)
    assert pfile.errors, 'the parser accepts %s' % CASES[case][0]['svc'].splitlines()[0]


@pytest.mark.parametrize('case', ['unknown_value', 'unknown_action', 'jump_zero', 'no_module'])
def test_parser_rejects_what_libpam_cannot_parse(parser, host, case):
    assert host[1][(case, 'root')]['rc_name'] == 'PAM_PERM_DENIED'
    assert _line(parser, case).errors


def test_parser_ignores_a_line_of_unknown_type(parser, host):
    assert host[1][('unknown_type_ignored', 'root')]['rc_name'] == 'PAM_SUCCESS'
    stack = _line(parser, 'unknown_type_ignored')
    assert not stack.errors and [e.line.module for e in stack.entries] == ['pam_permit.so']


def test_parser_jump_out_of_an_include_is_seen(parser, host):
    """libpam: the jump in the included file skips the adopt rule of the
    including file; the parser classifies it as jump_past_adopt."""
    assert not any(t['module'] == 'pam_slurm_adopt' for t in host[1][('jump_include_leaves', 'root')]['trace'])
    assert _terminators(parser, 'jump_include_leaves') == [('jump_past_adopt', 'jump_include_leaves-inc')]


def test_parser_jump_inside_a_substack_stays_there(parser, host):
    assert any(t['module'] == 'pam_slurm_adopt' for t in host[1][('jump_substack_stays', 'root')]['trace'])
    assert _terminators(parser, 'jump_substack_stays') == []


def test_parser_sufficient_in_include_ends_the_stack(parser, host):
    assert not host[1][('sufficient_include', 'root')]['trace']
    assert _terminators(parser, 'sufficient_include') == [('short_circuit', 'sufficient_include-inc')]


@pytest.mark.parametrize('case', ['sufficient_substack', 'done_substack', 'die_substack', 'requisite_substack'])
def test_parser_substack_ends_only_itself(parser, host, case):
    assert any(t['module'] == 'pam_slurm_adopt' for t in host[1][(case, 'root')]['trace'])
    assert _terminators(parser, case) == []


def test_parser_atinclude_takes_only_the_type(parser, host):
    assert host[1][('atinclude_types', 'root')]['rc_name'] == 'PAM_SUCCESS'
    assert [e.line.module for e in _line(parser, 'atinclude_types').entries] == ['pam_permit.so']
    assert [e.line.module for e in _line(parser, 'atinclude_types', 'auth').entries] == ['pam_deny.so']


def test_parser_continuations_and_comments(parser, host):
    for case in ('continuation', 'comment_mid_word', 'comment_trailing'):
        entries = _line(parser, case).entries
        assert [e.line.args for e in entries] == [['user', '=', 'root']], case
    assert [e.line.module for e in _line(parser, 'hash_line_does_not_continue').entries] == \
        ['pam_permit.so', 'pam_deny.so']
    pam_stack, src = parser
    blank = [ln for ln in src.load('/etc/pam.d/continuation_blank').lines if ln.kind != 'blank']
    assert blank[0].ambiguous, 'a blank line inside a continuation differs between 1.5 and 1.7: must be flagged'


def test_editor_treats_pam_elogind_like_pam_systemd(tmp_path, harness, host):
    assert host[1][('elogind_session', 'root')]['trace']
    pamd = tmp_path / 'pamd'
    pamd.mkdir()
    (pamd / 'sshd').write_text('@include common-account\nsession optional pam_elogind.so\n')
    (pamd / 'common-account').write_text('account required pam_unix.so\n')
    root = harness.stage_tree(str(tmp_path / 'root'), str(pamd))
    plan = harness.apply_editor(root)
    assert any(d['classification'] == 'pam_systemd' and 'pam_elogind' in d['text'] for d in plan.disabled)
