# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_pam_guard: the "no job" model of the adopt rule and the
placeholder, checked against the real libpam; the site's users and uids read
from the tree; the staged trees the guard evaluates.

The model (one rule built from real modules) must answer exactly as the adopt
rule answers for a user without a job.  It is compared with stand-ins that
answer that way (the real pam_exec with a tiny script; for pam_python the
compiled stand-in of tests/pam_eval, because pam_python cannot be loaded into
the evaluator's Python process), for every control, several surrounding
stacks, option variants and both users; the answers must be identical."""

import os
import subprocess

import pytest

from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_guard as pg
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_stack as ps
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_eval import evaluate
from pam_nodes import write

PAM_PYTHON = '/lib/security/pam_python.so'      # Debian's libpam-python (not in the multiarch dir)
STANDIN_C = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'pam_eval',
                         'standin.c')
SCRIPT = '/usr/lib/slurm-adopt/pam_slurm_adopt.py'
SH_STANDIN = '/etc/security/standin_adopt.sh'

# the same through pam_exec: exit 0 for "ignore" and success, 1 for a denial
SH_STANDIN_TEXT = '''
svc=$PAM_SERVICE; ign=
for a in "$@"; do
  case "$a" in service=*) svc=${a#service=};; action_no_jobs=ignore) ign=1;; esac
done
[ "$svc" != "*" ] && [ "$PAM_SERVICE" != "$svc" ] && exit 0
[ "$PAM_USER" = root ] && exit 0
[ -n "$ign" ] && exit 0
exit 1
'''

STACKS = {
    'alone': '{adopt}\n',
    'between': 'account required pam_unix.so\n{adopt}\naccount required pam_permit.so\n',
    'access_after': '{adopt}\naccount required pam_access.so accessfile=/etc/security/model-test-access.conf\n',
    'jump_over': 'account [success=1 default=ignore] pam_succeed_if.so user = root quiet\n{adopt}\n'
                 'account required pam_permit.so\n',
    'ok_first': 'account required pam_permit.so\n{adopt}\n',
}
CONTROLS = ['required', 'requisite', 'sufficient', 'optional', '[success=ok default=bad]',
            '[success=done ignore=ignore default=die]', '[success=1 default=ignore]', '[default=ok]']
OPTIONS = ['', 'action_no_jobs=ignore', 'service=login']


def real_rule(interface, control, options):
    if interface == 'pam_python':
        return 'account %s pam_python.so %s action_adopt_failure=deny %s' % (control, SCRIPT, options)
    return 'account %s pam_exec.so stdout quiet /usr/bin/python3 %s pam-exec %s' % (control, SCRIPT, options)


def standin_rule(interface, control, options):
    if interface == 'pam_python':
        return 'account %s %s %s action_adopt_failure=deny %s' % (control, PAM_PYTHON, SCRIPT, options)
    return 'account %s pam_exec.so quiet /bin/sh %s pam-exec %s' % (control, SH_STANDIN, options)


@pytest.fixture(scope='module')
def c_standin(tmp_path_factory):
    """tests/pam_eval/standin.c (no decisions: it answers what its answers file says)."""
    out = str(tmp_path_factory.mktemp('standin') / 'standin.so')
    subprocess.run(['gcc', '-shared', '-fPIC', '-O2', '-o', out, STANDIN_C, '-lpam'], check=True)
    return out


def _answers(options):
    """pam_slurm_adopt for a user without a job: root -> PAM_IGNORE (25), others -> PAM_PERM_DENIED (6);
    action_no_jobs=ignore or another service -> PAM_IGNORE for everyone."""
    if options:
        return 'pam_python account * * 25 0 adopt\n'
    return 'pam_python account root * 25 0 adopt\npam_python account * * 6 0 adopt\n'


@pytest.mark.parametrize('interface', ['pam_python', 'pam_exec'])
def test_the_model_answers_like_the_adopt_rule_for_a_user_without_a_job(tmp_path, interface, c_standin):
    """pam_exec: the real pam_exec running a tiny script; pam_python: pam_python cannot be
    loaded into the evaluator (a Python process itself), so the compiled stand-in takes its
    place and answers what pam_slurm_adopt answers for a user without a job."""
    got = {'standin': {}, 'model': {}}
    probe = [{'name': pg.PROBE_USER, 'uid': 1000}]
    for oidx, options in enumerate(OPTIONS):
        standin, model = str(tmp_path / ('standin%d' % oidx)), str(tmp_path / ('model%d' % oidx))
        queries = []
        for tree in (standin, model):
            write(tree, SH_STANDIN, SH_STANDIN_TEXT)
            write(tree, '/etc/security/model-test-access.conf', '+:root:ALL\n-:ALL:ALL\n')
            write(tree, pg.MODEL_ACCESS_FILE, pg.MODEL_ACCESS_TEXT)
        for sname, stack in sorted(STACKS.items()):
            for cidx, control in enumerate(CONTROLS):
                name = '%s-%d-%d' % (sname, cidx, oidx)
                write(standin, '/etc/pam.d/' + name, stack.format(adopt=standin_rule(interface, control, options)))
                line = ps.parse(real_rule(interface, control, options) + '\n').lines[0]
                # the model the guard stages: acting for the service unless options name another
                model_rule = pg.model_line(line, acting=not options.startswith('service='))
                write(model, '/etc/pam.d/' + name, stack.format(adopt=model_rule))
                for user in ('root', pg.PROBE_USER):
                    queries.append({'service': name, 'user': user, 'op': 'account', 'rhost': '192.0.2.1'})
        for side, tree in (('standin', standin), ('model', model)):
            out = evaluate(queries, tree=tree, probe_users=probe, timeout=20,
                           module_overlay={'pam_python.so': c_standin} if side == 'standin' else None,
                           files={'answers': _answers(options)})
            got[side].update(((r['query']['service'], r['query']['user']), r['rc_name']) for r in out['results'])
    assert len(got['standin']) == len(STACKS) * len(CONTROLS) * len(OPTIONS) * 2
    differences = ['%s %s: stand-in %s, model %s' % (k + (got['standin'][k], got['model'][k]))
                   for k in sorted(got['standin']) if got['standin'][k] != got['model'][k]]
    # the one known difference (docs/pam.md): a control that maps PAM_IGNORE to "ok" makes libpam
    # keep PAM_IGNORE as root's result; the model's pam_access answers success there. pam_adopt
    # never writes such a control, and a site's old adopt rule is replaced by a placeholder.
    known = [d for d in differences if '-7-0 root: stand-in PAM_IGNORE, model PAM_SUCCESS' in d]
    if interface == 'pam_python':
        assert len(known) == len(STACKS) - 1     # jump_over: root jumps over the rule
    assert sorted(set(differences) - set(known)) == []
    assert 'error' not in set(got['standin'].values())
    # and the answers are not all alike (the comparison is not vacuous)
    assert len(set(got['standin'].values())) >= 3


def test_the_model_is_one_rule():
    for interface in ('pam_python', 'pam_exec'):
        for control in CONTROLS:
            for options in OPTIONS:
                line = ps.parse(real_rule(interface, control, options) + '\n').lines[0]
                for acting in (True, False):
                    model = ps.parse(pg.model_line(line, acting) + '\n').lines
                    assert [ln.kind for ln in model] == ['rule'] and not model[0].control_error


PLACEHOLDER_STACKS = {
    'first': '{x}\naccount required pam_permit.so\n',
    'jumped': 'account [success=2 default=ignore] pam_succeed_if.so user = root quiet\n{x}\n'
              'account required pam_deny.so\naccount required pam_permit.so\n',
    'last': 'account required pam_unix.so\n{x}\n',
    'after_deny': 'account [default=ignore success=1] pam_succeed_if.so user = root quiet\n'
                  'account requisite pam_deny.so\n{x}\naccount required pam_permit.so\n',
    'session': 'session required pam_permit.so\n{x}\nsession optional pam_umask.so\n',
}


def test_the_placeholder_is_neutral(tmp_path):
    """Replacing a rule by the placeholder changes nothing but the rule
    itself: the same answers as with a rule whose answer is ignored whatever
    it is (pam_permit and pam_deny under [default=ignore]); and the count of
    rules, so jumps over it, stays."""
    variants = {'permit': '{t} [default=ignore] pam_permit.so', 'deny': '{t} [default=ignore] pam_deny.so'}
    got = {}
    for vname, rule in variants.items():
        tree = str(tmp_path / vname)
        queries = []
        for sname, stack in PLACEHOLDER_STACKS.items():
            ptype = 'session' if sname == 'session' else 'account'
            write(tree, '/etc/pam.d/' + sname, stack.format(x=rule.format(t=ptype)))
            for user in ('root', pg.PROBE_USER):
                queries.append({'service': sname, 'user': user, 'op': 'open_session' if ptype == 'session'
                                else 'account'})
        out = evaluate(queries, tree=tree, probe_users=[{'name': pg.PROBE_USER, 'uid': 1000}])
        got[vname] = dict(((r['query']['service'], r['query']['user']), r['rc_name']) for r in out['results'])
    assert got['permit'] == got['deny']
    assert got['permit'][('jumped', 'root')] == 'PAM_SUCCESS'            # the jump still skips pam_deny
    assert got['permit'][('jumped', pg.PROBE_USER)] == 'PAM_AUTH_ERR'
    placeholder = ps.parse(pg.PROBE_USER and 'account [default=ignore] pam_permit.so\n').lines[0]
    assert set(placeholder.actions.values()) == set(['ignore'])


def test_site_facts_come_from_the_tree(tmp_path):
    root = str(tmp_path)
    write(root, '/etc/passwd', 'root:x:0:0::/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n'
                               'svc:x:300:300::/var/lib/svc:/bin/bash\nann:x:520:520::/home/ann:/bin/bash\n'
                               'nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n')
    write(root, '/etc/group', 'root:x:0:\nwheel:x:10:ann\nann:x:520:\n')
    write(root, '/etc/login.defs', '# comment\nUID_MIN\t\t 1000\nSYS_UID_MAX 999\n')
    facts = pg.site_facts(root)
    assert facts.user_groups('ann') == set(['wheel', 'ann'])
    assert facts.user_groups('root') == set(['root'])
    assert facts.user_groups('nosuchuser') is None
    # ann (a person: login shell, home in /home) starts the regular uids, not UID_MIN
    uid, why = facts.first_regular_uid()
    assert uid == 520 and 'ann' in why
    assert (facts.uid_min, facts.sys_uid_max) == (1000, 999)
    assert pg.site_facts(root, directory_uid_min=400).first_regular_uid()[0] == 400
    # a tree without users: login.defs defaults
    assert pg.site_facts(str(tmp_path / 'empty')).first_regular_uid()[0] == 1000


def test_stage_models_adopt_rules_and_relocates_the_tree_s_files(tmp_path):
    root = str(tmp_path / 'root')
    write(root, '/etc/pam.d/sshd', 'account sufficient pam_listfile.so item=user sense=allow onerr=fail '
                                   'file=/etc/ssh/admins\naccount required pam_python.so %s\n' % SCRIPT)
    write(root, '/etc/ssh/admins', 'root\n')
    write(root, '/etc/passwd', 'root:x:0:0::/root:/bin/bash\n')
    dest = str(tmp_path / 'stage')
    os.makedirs(dest)
    pg.stage(root, {'/etc/security/new.conf': 'x\n'}, dest, 'sshd')
    text = open(os.path.join(dest, 'etc/pam.d/sshd')).read()
    assert 'file=/etc/security/.tree/etc/ssh/admins' in text
    assert open(os.path.join(dest, 'etc/security/.tree/etc/ssh/admins')).read() == 'root\n'
    assert '# hpc.slurm_adopt:model' in text and 'pam_python' not in text
    assert open(os.path.join(dest, 'etc/security/new.conf')).read() == 'x\n'
    assert open(os.path.join(dest, 'etc/passwd')).read() == 'root:x:0:0::/root:/bin/bash\n'
    assert open(os.path.join(dest, 'etc/shadow')).read() == 'root:*:19000:0:99999:7:::\n'
