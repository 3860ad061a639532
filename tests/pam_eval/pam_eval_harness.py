# SPDX-License-Identifier: GPL-3.0-or-later
"""Test harness around the real-libpam evaluator (plugins/module_utils/_pam_eval.py).

Test-only; never shipped.  What it adds to the evaluator:

* the **stand-in module** (``standin.c``, compiled here with gcc against the
  Linux-PAM headers) installed in place of the site and directory modules
  (``STANDIN_MODULES``); every other module is the real one;
* the **user classes** (``CLASSES``): root, the connecting Ansible user, an
  admin-group member, a local non-admin user, a directory user without a
  job and one with a job.  Directory users are NSS users that are not in
  /etc/passwd (libnss-extrausers in the namespace);
* the **scenarios** (``SCENARIOS``): directory ``up``, ``stopped`` (directory
  users unresolvable, directory modules answer as they do without their
  daemon), ``hung`` (as stopped, and every call of a directory module is
  traced as ``hung``: in real life it would wait for its timeout);
* ``answers(scenario)``: every decision of every stand-in, in Python;
* ``stage_tree()``, ``evaluate_tree()`` (all classes x scenarios x services x
  ops: a result table) and ``property_check()`` (issue 8's property).

Use from any test::

    sys.path.insert(0, os.path.join(REPO, 'tests', 'pam_eval'))
    import pam_eval_harness as H
    before = H.evaluate_tree(H.stage_tree('/tmp/x/before', pamd='tests/fixtures/pamd/debian12'))
    ... edit a copy ...
    after = H.evaluate_tree('/tmp/x/after')
    assert H.property_check(before, after) == []
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'plugins', 'module_utils'))

import _pam_eval  # noqa: E402  pylint: disable=wrong-import-position

PASSWORD = 'pe-Secret-1'
ADMIN_GROUP = 'wheel'

# class -> probe user.  'job': has a running job on the node; 'directory':
# comes from the directory (extrausers), not from /etc/passwd.
CLASSES = {
    'root': {'name': 'root', 'job': False, 'directory': False, 'admin': True},
    'ansible': {'name': 'pe-ansible', 'uid': 1500, 'job': False, 'directory': False, 'admin': True},
    'admin': {'name': 'pe-admin', 'uid': 1501, 'groups': [ADMIN_GROUP], 'job': False, 'directory': False,
              'admin': True},
    'local': {'name': 'pe-local', 'uid': 1502, 'job': False, 'directory': False, 'admin': False},
    'dir_nojob': {'name': 'pe-dirnojob', 'uid': 20001, 'job': False, 'directory': True, 'admin': False},
    'dir_job': {'name': 'pe-dirjob', 'uid': 20002, 'job': True, 'directory': True, 'admin': False},
}
SCENARIOS = ('up', 'stopped', 'hung')
OPS = ('account', 'auth', 'open_session')
RHOST = '192.0.2.10'

DIRECTORY_MODULES = ('pam_sss', 'pam_ldap', 'pam_winbind', 'pam_krb5')
ADOPT_MODULES = ('pam_slurm_adopt', 'pam_python', 'pam_exec')
SITE_MODULES = ('pam_faillock', 'pam_systemd', 'pam_elogind', 'pam_tally2', 'pam_mkhomedir', 'pam_oddjob_mkhomedir',
                'pam_fprintd', 'pam_pkcs11', 'pam_gnome_keyring', 'pam_kwallet5', 'pam_sepermit',
                'pam_selinux', 'pam_lastlog', 'pam_motd')
# systemd-homed: no user of ours is a homed user; pam_systemd_home answers
# PAM_USER_UNKNOWN for users it does not manage (Arch's system-auth has it
# with [success=N default=ignore])
UNMANAGED_MODULES = ('pam_systemd_home',)
STANDIN_MODULES = DIRECTORY_MODULES + ADOPT_MODULES + SITE_MODULES + UNMANAGED_MODULES
FUNCTIONS = ('auth', 'setcred', 'account', 'open_session', 'close_session', 'chauthtok')

RC = _pam_eval.PAM_RC


def ensure_tools():
    """Install what the tests need (tests/pam_eval/install.sh) when missing."""
    need = [not shutil.which('gcc'), not os.path.exists('/usr/include/security/pam_modules.h'),
            not os.path.exists('/usr/lib/libnss_extrausers.so.2') and not
            os.path.exists('/lib/x86_64-linux-gnu/libnss_extrausers.so.2'),
            not os.path.isdir('/var/lib/extrausers')]
    if any(need):
        subprocess.run(['bash', os.path.join(HERE, 'install.sh')], check=True)


def build_standin(outdir):
    """Compile standin.c; returns the .so path."""
    ensure_tools()
    out = os.path.join(outdir, 'standin.so')
    subprocess.run(['gcc', '-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out,
                    os.path.join(HERE, 'standin.c'), '-lpam'], check=True)
    return out


def module_overlay(standin):
    return dict(('%s.so' % m, standin) for m in STANDIN_MODULES)


# --------------------------------------------------------------------------
# Answers: every decision of the stand-ins


def _directory_answer(module, function, cls, scenario):
    """(rc name, tag) of a directory module.  Researched against the real
    modules' sources:

    * pam_sss: sssd not running -> the request to its socket fails ->
      PAM_AUTHINFO_UNAVAIL for every user and function (pam_sss.c: a failed
      sss_pam_make_request gives PAM_AUTHINFO_UNAVAIL).  Running: users the
      responder does not know (local users, root: filter_users) ->
      PAM_USER_UNKNOWN.
    * pam_ldap (nss-pam-ldapd, Debian profile with minimum_uid=1000): root
      and uids below minimum_uid -> PAM_USER_UNKNOWN without asking nslcd;
      nslcd down -> PAM_AUTHINFO_UNAVAIL; unknown user -> PAM_USER_UNKNOWN.
    * pam_winbind: winbindd down -> PAM_AUTHINFO_UNAVAIL (auth) and, for
      account, its user lookup fails -> PAM_USER_UNKNOWN for unresolvable
      users; local users -> PAM_USER_UNKNOWN (winbind does not know them).
    * pam_krb5 (Debian's pam-krb5, minimum_uid=1000): root -> PAM_IGNORE;
      auth: KDC unreachable -> PAM_AUTHINFO_UNAVAIL, no principal ->
      PAM_USER_UNKNOWN; account/session for a user that did not authenticate
      with Kerberos -> PAM_IGNORE.
    """
    user_is_dir = CLASSES[cls]['directory']
    down = scenario != 'up'
    tag = 'hung' if scenario == 'hung' else ('dir' if not down else 'down')
    if module == 'pam_krb5':
        if cls == 'root':
            return 'PAM_IGNORE', tag
        if function == 'auth':
            if down:
                return 'PAM_AUTHINFO_UNAVAIL', tag
            return ('PAM_SUCCESS' if user_is_dir else 'PAM_USER_UNKNOWN'), tag
        return ('PAM_SUCCESS' if user_is_dir and not down else 'PAM_IGNORE'), tag
    if module == 'pam_ldap' and CLASSES[cls].get('uid', 0) < 1000:
        return 'PAM_USER_UNKNOWN', tag
    if down:
        if module == 'pam_winbind' and function == 'account':
            return 'PAM_USER_UNKNOWN', tag
        return 'PAM_AUTHINFO_UNAVAIL', tag
    return ('PAM_SUCCESS' if user_is_dir else 'PAM_USER_UNKNOWN'), tag


def _adopt_answer(module, cls, scenario):
    """The adopt rule (C module, or ours through pam_python/pam_exec):
    a job -> PAM_SUCCESS, root -> PAM_IGNORE, unresolvable user ->
    PAM_SESSION_ERR (getpwnam fails), otherwise PAM_PERM_DENIED.  pam_exec
    maps exit 0 to PAM_SUCCESS and any other exit to PAM_SYSTEM_ERR and
    cannot return PAM_IGNORE (lab-recipes.md section 4)."""
    spec = CLASSES[cls]
    if spec['directory'] and scenario != 'up':
        rc = 'PAM_SESSION_ERR'
    elif spec['job']:
        rc = 'PAM_SUCCESS'
    elif cls == 'root':
        rc = 'PAM_IGNORE'
    else:
        rc = 'PAM_PERM_DENIED'
    if module == 'pam_exec':
        rc = 'PAM_SUCCESS' if rc in ('PAM_SUCCESS', 'PAM_IGNORE') else 'PAM_SYSTEM_ERR'
    return rc


def answers(scenario):
    """The answers file of the stand-ins for ``scenario`` (see standin.c)."""
    lines = []
    for cls, spec in sorted(CLASSES.items()):
        user = spec['name']
        for module in DIRECTORY_MODULES:
            for function in FUNCTIONS:
                rc, tag = _directory_answer(module, function, cls, scenario)
                lines.append('%s %s %s * %d 0 %s' % (module, function, user, RC[rc], tag))
        for module in ADOPT_MODULES:
            lines.append('%s account %s 1 %d 0 adopt' % (module, user, RC[_adopt_answer(module, cls, scenario)]))
    # the adopt modules in other functions or without a slurm_adopt argument:
    # some other site use, answered with success
    for module in ADOPT_MODULES:
        lines.append('%s * * * %d 0 site' % (module, RC['PAM_SUCCESS']))
    # site modules that need no directory: success (pam_faillock: nobody is
    # locked; pam_systemd/pam_elogind: the logind session is made)
    for module in SITE_MODULES:
        lines.append('%s * * * %d 0 site' % (module, RC['PAM_SUCCESS']))
    for module in UNMANAGED_MODULES:
        lines.append('%s * * * %d 0 unmanaged' % (module, RC['PAM_USER_UNKNOWN']))
    return '\n'.join(lines) + '\n'


def probe_users(scenario):
    users = []
    for cls, spec in sorted(CLASSES.items()):
        if spec['directory'] and scenario != 'up':
            continue           # the directory is down: its users do not resolve
        user = {'name': spec['name'], 'password': PASSWORD, 'groups': list(spec.get('groups') or [])}
        if 'uid' in spec:
            user['uid'] = spec['uid']
        if spec['directory']:
            user['source'] = 'extrausers'
        users.append(user)
    return users


# --------------------------------------------------------------------------
# Trees


def stage_tree(dest, pamd, security=None, vendor=None):
    """A tree for the evaluator at ``dest``.

    ``pamd`` is either a pam.d directory (then: ``etc/pam.d`` from it,
    ``etc/security`` from ``security`` (default: this machine's
    /etc/security, the real defaults of pam_access, pam_limits, ...),
    ``usr/lib/pam.d`` from ``vendor`` (default: none, the real one is then
    hidden)), or a tree laid out like a root (it has ``etc/pam.d``; the
    corpus trees): copied whole, symlinks kept, ``etc/security`` added from
    ``security`` or this machine when it has none.  Returns ``dest``."""
    if os.path.isdir(os.path.join(pamd, 'etc', 'pam.d')):
        shutil.copytree(pamd, dest, symlinks=True)
        if not os.path.isdir(os.path.join(dest, 'etc', 'security')):
            shutil.copytree(security or '/etc/security', os.path.join(dest, 'etc', 'security'), symlinks=True)
        return dest
    os.makedirs(os.path.join(dest, 'etc'), exist_ok=True)
    shutil.copytree(pamd, os.path.join(dest, 'etc', 'pam.d'), symlinks=True)
    shutil.copytree(security or '/etc/security', os.path.join(dest, 'etc', 'security'), symlinks=True)
    if vendor:
        os.makedirs(os.path.join(dest, 'usr', 'lib'), exist_ok=True)
        shutil.copytree(vendor, os.path.join(dest, 'usr', 'lib', 'pam.d'), symlinks=True)
    return dest


def _pam_files(tree):
    names = set()
    for sub in ('etc/pam.d', 'usr/lib/pam.d'):
        path = os.path.join(tree, sub)
        if os.path.isdir(path):
            names.update(n for n in os.listdir(path) if not n.startswith('.'))
    return names


def services(tree):
    """Every PAM file of the tree that no other file includes, plus
    ``other``: the services an application can name."""
    sys.path.insert(0, os.path.join(REPO, 'plugins', 'module_utils'))
    names = _pam_files(tree)
    included = set()
    for name in names:
        for sub in ('etc/pam.d', 'usr/lib/pam.d'):
            path = os.path.join(tree, sub, name)
            if not os.path.isfile(path):
                continue
            with open(path, errors='surrogateescape') as handle:
                for raw in handle:
                    words = raw.split('#', 1)[0].split()
                    if len(words) >= 2 and words[0] == '@include':
                        included.add(words[1])
                    elif len(words) >= 3 and words[1].lower() in ('include', 'substack'):
                        included.add(words[2])
            break
    return sorted(n for n in names if n not in included or n == 'other')


def queries(tree, scenario, svcs=None, classes=None, ops=OPS):
    out = []
    for service in svcs or services(tree):
        for cls in classes or sorted(CLASSES):
            for op in ops:
                out.append({'service': service, 'user': CLASSES[cls]['name'], 'op': op, 'password': PASSWORD,
                            'rhost': RHOST, 'tty': 'ssh', 'timeout': 10,
                            'labels': {'class': cls, 'scenario': scenario}})
    return out


def evaluate_tree(tree, standin, scenarios=SCENARIOS, svcs=None, classes=None, ops=OPS, root=None):
    """Result table of ``tree``: every class x scenario x service x op.
    Returns a list of evaluator results (labels: class, scenario).

    ``hung`` is not run separately when ``stopped`` is: its answers are the
    same by construction (the stand-ins answer alike, see answers()), so the
    ``stopped`` results are copied with every directory-module trace line
    re-tagged ``hung``."""
    import copy
    results = []
    for scenario in scenarios:
        if scenario == 'hung' and 'stopped' in scenarios:
            continue
        out = _pam_eval.evaluate(queries(tree, scenario, svcs, classes, ops), tree=tree, root=root,
                                 probe_users=probe_users(scenario), module_overlay=module_overlay(standin),
                                 files={'answers': answers(scenario)})
        results.extend(out['results'])
    if 'hung' in scenarios and 'stopped' in scenarios:
        for res in [r for r in results if r['query']['labels']['scenario'] == 'stopped']:
            hung = copy.deepcopy(res)
            hung['query']['labels']['scenario'] = 'hung'
            for line in hung['trace']:
                if line['module'] in DIRECTORY_MODULES and line['tag'] == 'down':
                    line['tag'] = 'hung'
            results.append(hung)
    return results


def table(results):
    """{(service, op, class, scenario): rc_name} of a result list."""
    return dict(((r['query']['service'], r['query']['ops'][0], r['query']['labels']['class'],
                  r['query']['labels']['scenario']), r['rc_name']) for r in results)


def allowed_change(before, after, service='sshd'):
    """Issue 8's property: only ``service``'s account answer for non-admin
    users without a job may change, and only to a denial."""
    q = before['query']
    spec = CLASSES[q['labels']['class']]
    return (q['service'] == service and q['ops'] == ['account'] and not spec['admin'] and not spec['job']
            and after['status'] == 'ok' and after['rc_name'] != 'PAM_SUCCESS')


def property_check(before, after, service='sshd'):
    """Violations of issue 8's property (readable strings): every answer is
    the same except ``service``'s account answer for non-admin users
    without a job, which must be a denial after the change; nobody touches
    a hung module who did not before."""
    violations = _pam_eval.compare(before, after, allowed=lambda b, a: allowed_change(b, a, service))
    for res in after:
        q = res['query']
        spec = CLASSES[q['labels']['class']]
        if q['service'] == service and q['ops'] == ['account'] and not spec['admin'] and not spec['job'] \
                and res['rc_name'] == 'PAM_SUCCESS':
            violations.append('%s: still PAM_SUCCESS (the adopt rule does not deny a user without a job)'
                              % _pam_eval.describe(res))
    return violations


# --------------------------------------------------------------------------
# Today's editor (plugins/module_utils/_pam_edit.py), for the property runs


def import_collection():
    """Make ``ansible_collections.hpc.slurm_adopt`` importable (a temporary
    collection root whose hpc/slurm_adopt points at this checkout)."""
    try:
        import ansible_collections.hpc.slurm_adopt  # noqa: F401  pylint: disable=unused-import
        return
    except ImportError:
        pass
    import atexit
    import tempfile
    root = tempfile.mkdtemp(prefix='pe-coll-')
    os.makedirs(os.path.join(root, 'ansible_collections', 'hpc'))
    os.symlink(REPO, os.path.join(root, 'ansible_collections', 'hpc', 'slurm_adopt'))
    atexit.register(shutil.rmtree, root, True)
    sys.path.insert(0, root)


def editor_params(root, **overrides):
    """pam_adopt's parameters with its defaults, as site.yml sets them for
    the user classes (the Ansible user and the admin group in access_rules
    and ensure_access_for), resolved like the module does."""
    import_collection()
    from ansible_collections.hpc.slurm_adopt.plugins.modules import pam_adopt
    params = dict((k, v.get('default')) for k, v in pam_adopt.argument_spec().items())
    params.update(root=root, interface='pam_python', require_modules=False, check_mode=False,
                  access_rules=['+:root:ALL', '+:%s:ALL' % CLASSES['ansible']['name'], '+:(%s):ALL' % ADMIN_GROUP,
                                '-:ALL:ALL'],
                  ensure_access_for=['root', CLASSES['ansible']['name']])
    params.update(overrides)
    err = pam_adopt.check_params(params)
    if err:
        raise ValueError(err)
    return params


def apply_editor(root, **overrides):
    """plan_present + commit on the tree at ``root`` (a copy: it is
    changed).  Returns the plan, or raises pam_edit.PlanError."""
    import_collection()
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pam_edit
    params = editor_params(root, **overrides)
    plan = pam_edit.plan_present(params)
    pam_edit.commit(params, plan, 'present')
    return plan


# --------------------------------------------------------------------------
# Image roots


def image_root(suite):
    """Root file system of a Debian ``suite`` image (bookworm, trixie, sid):
    $PAM_EVAL_<SUITE>_ROOT when set, else the pam-corpus helper's cached
    chroot (lab/pamcorpus/chroot.sh SUITE, built once under /var/cache).
    Returns None when neither exists in this checkout."""
    env = os.environ.get('PAM_EVAL_%s_ROOT' % suite.upper())
    if env:
        return env
    script = os.path.join(REPO, 'lab', 'pamcorpus', 'chroot.sh')
    if not os.path.exists(script):
        return None
    proc = subprocess.run(['bash', script, suite], capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError('lab/pamcorpus/chroot.sh %s failed: %s' % (suite, proc.stderr[-3000:]))
    return os.path.join(proc.stdout.strip().splitlines()[-1], 'root')


# --------------------------------------------------------------------------
# The property, through the editor


def editor_property(pamd, workdir, standin, vendor=None, security=None, scenarios=SCENARIOS, **editor_overrides):
    """Stage ``pamd`` twice under ``workdir``, run today's editor on the
    second copy, evaluate both and check the property.  Returns a dict:
    ``refused`` (the editor's PlanError text, or None), ``violations``
    (property_check), ``before``/``after`` (result lists), ``plan``."""
    import_collection()
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pam_edit
    before = stage_tree(os.path.join(workdir, 'before'), pamd, security=security, vendor=vendor)
    after = stage_tree(os.path.join(workdir, 'after'), pamd, security=security, vendor=vendor)
    out = {'refused': None, 'violations': [], 'plan': None, 'before': None, 'after': None}
    try:
        out['plan'] = apply_editor(after, **editor_overrides)
    except pam_edit.PlanError as exc:
        out['refused'] = str(exc)
        return out
    svcs = services(before)
    out['before'] = evaluate_tree(before, standin, scenarios=scenarios, svcs=svcs)
    out['after'] = evaluate_tree(after, standin, scenarios=scenarios, svcs=svcs)
    out['violations'] = property_check(out['before'], out['after'])
    return out


def summarise(violations):
    """Group violation lines by what changed (service, op, answers), listing
    the classes and scenarios: one line per group."""
    groups = {}
    for line in violations:
        head, _sep, what = line.partition(': ')
        words = head.split(' ')
        service, op = words[0], words[1]
        labels = head[head.index('[') + 1:head.index(']')] if '[' in head else ''
        parts = dict(p.split('=', 1) for p in labels.split(', ') if '=' in p)
        key = (service, op, what)
        groups.setdefault(key, set()).add('%s/%s' % (parts.get('class', '?'), parts.get('scenario', '?')))
    return ['%s %s: %s  <- %s' % (s, o, w, ' '.join(sorted(v))) for (s, o, w), v in sorted(groups.items())]
