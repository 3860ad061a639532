# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Who gets in: the site's users, the "no job" model of the adopt rule, and
the lockout guard that runs the node's real libpam before and after an edit.

Standard library only, Python 3.6+, no Ansible imports.

* :func:`site_facts` reads users, groups and ``login.defs`` from the tree
  ``root`` names (an image's own files, never the managed host's, unless the
  root is ``/``).
* :func:`model_line` is one PAM rule, built from real modules, that answers
  exactly as an adopt rule (pam_python, pam_exec, the C module or the
  service's client, with its
  control and options) answers for a user **without a job**: root gets
  ``PAM_IGNORE`` (pam_exec: success), everybody else ``action_no_jobs``.  It
  is a single rule, so every jump counts it as the adopt rule it replaces.
* :func:`stage` writes a PAM tree (pam.d, the vendor directory, security,
  and for config-only trees the users) with the computed files and every
  adopt rule replaced by its model.
* :func:`lockout_guard` runs both trees through real libpam (module
  ``_pam_eval``: a private mount namespace, nothing on the node changes) for
  the users that must keep access and for a probe user (an ordinary local
  user with no job and no admin group) and reports every answer that
  changes, other than the probe's sshd account answer, which must become a
  denial.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import tempfile
import threading

from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import (
    FileSource, PAM_TYPES, effective_stack, is_adopt_rule, keyword_table, parse, rooted, resolve_host,
)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_eval import (
    EvalError, evaluate,
)

MODEL_ACCESS_FILE = '/etc/security/slurm-adopt-model-access.conf'
MODEL_ACCESS_TEXT = '+:root:ALL\n-:ALL:ALL\n'
PROBE_USER = 'slurm-adopt-probe'
NOLOGIN_SHELLS = ('nologin', 'false', 'sync', 'halt', 'shutdown', 'true')
SYSTEM_HOMES = ('/', '/bin', '/sbin', '/usr', '/var', '/dev', '/proc', '/run', '/nonexistent', '/etc', '/srv',
                '/lib', '/opt', '/tmp', '/boot')
OP_OF_TYPE = {'account': 'account', 'session': 'open_session', 'auth': 'auth', 'password': 'chauthtok'}
LET_IN = ('PAM_SUCCESS', 'PAM_NEW_AUTHTOK_REQD')

# Test hook: modules to replace in the evaluation ({'pam_sss.so': '/path/to/stand-in.so'}),
# for trees that name modules this machine does not have.  Empty in production.
MODULE_OVERLAY = {}


class GuardError(Exception):
    """The guard could not run (the evaluator is unavailable)."""


# --------------------------------------------------------------------------
# Users and uids of the tree


def _read(root, path):
    try:
        with open(rooted(root, path), 'rb') as handle:
            return handle.read().decode('utf-8', 'surrogateescape')
    except (IOError, OSError):
        return None


def _login_defs(text):
    out = {}
    for line in (text or '').splitlines():
        words = line.split('#', 1)[0].split()
        if len(words) >= 2:
            out[words[0]] = words[1]
    return out


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class SiteFacts(object):
    """Users, groups and uid limits of one tree.  ``nss`` (root '/' only)
    also asks the name service for users that are not in /etc/passwd."""

    def __init__(self, root='/', directory_uid_min=None):
        self.root = root or '/'
        self.passwd = {}
        self.groups = {}          # name -> (gid, members)
        text = _read(self.root, '/etc/passwd')
        self.has_passwd = text is not None
        for line in (text or '').splitlines():
            parts = line.split(':')
            if len(parts) >= 7 and parts[0] and not parts[0].startswith(('+', '-')):
                self.passwd[parts[0]] = {'uid': _int(parts[2], -1), 'gid': _int(parts[3], -1),
                                         'home': parts[5], 'shell': parts[6]}
        for line in (_read(self.root, '/etc/group') or '').splitlines():
            parts = line.split(':')
            if len(parts) >= 4 and parts[0]:
                self.groups[parts[0]] = (_int(parts[2], -1), [m for m in parts[3].split(',') if m])
        defs = _login_defs(_read(self.root, '/etc/login.defs'))
        self.uid_min = _int(defs.get('UID_MIN'), 1000)
        self.sys_uid_max = _int(defs.get('SYS_UID_MAX'), self.uid_min - 1)
        self.directory_uid_min = directory_uid_min
        self.nss = self.root in ('', '/')

    def user(self, name):
        if name in self.passwd:
            return self.passwd[name]
        if self.nss:
            import pwd
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                return None
            return {'uid': pw.pw_uid, 'gid': pw.pw_gid, 'home': pw.pw_dir, 'shell': pw.pw_shell}
        return None

    def user_groups(self, name):
        """Group names of ``name`` (primary and supplementary), or None when
        the user is unknown in this tree."""
        info = self.user(name)
        if info is None:
            return None
        groups = set()
        for gname, (gid, members) in self.groups.items():
            if gid == info['gid'] or name in members:
                groups.add(gname)
        if self.nss:
            import grp
            try:
                groups.add(grp.getgrgid(info['gid']).gr_name)
            except KeyError:
                pass
            try:
                for group in grp.getgrall():
                    if name in group.gr_mem:
                        groups.add(group.gr_name)
            except KeyError:
                pass
        return groups

    def regular_users(self):
        out = []
        for name, info in self.passwd.items():
            shell = info['shell'].rsplit('/', 1)[-1]
            home = info['home'].rstrip('/') or '/'
            if info['uid'] <= 0 or info['uid'] == 65534 or shell in NOLOGIN_SHELLS or not shell:
                continue
            if home in SYSTEM_HOMES or any(home.startswith(d + '/') for d in SYSTEM_HOMES if d not in ('/',)):
                if not home.startswith('/home/'):
                    continue
            out.append((info['uid'], name))
        return sorted(out)

    def first_regular_uid(self):
        """(uid, why): the smallest uid an ordinary user of this site can
        have: UID_MIN of login.defs, the smallest uid of a person in
        /etc/passwd (login shell, home outside the system directories) and
        ``directory_uid_min``, whichever is lowest."""
        cands = [(self.uid_min, 'UID_MIN %d in %s' % (self.uid_min, rooted(self.root, '/etc/login.defs')))]
        regular = self.regular_users()
        if regular:
            uid, name = regular[0]
            cands.append((uid, 'user %s (uid %d) in %s' % (name, uid, rooted(self.root, '/etc/passwd'))))
        if self.directory_uid_min is not None:
            cands.append((int(self.directory_uid_min), 'directory_uid_min %d' % int(self.directory_uid_min)))
        return min(cands)


def site_facts(root='/', directory_uid_min=None):
    return SiteFacts(root, directory_uid_min)


# --------------------------------------------------------------------------
# The "no job" model of an adopt rule


def adopt_rule_facts(line):
    """(interface, options) of an adopt rule: interface 'pam_exec' for
    pam_exec.so, else 'pam_python' (pam_python, the C module and the
    adoption service's client pam_slurm_adopt_client.so answer the same way:
    PAM_IGNORE included); options as a dict of lower-case names."""
    interface = 'pam_exec' if line.module_name == 'pam_exec.so' else 'pam_python'
    opts = {}
    for arg in line.args:
        if '=' in arg:
            key, value = arg.split('=', 1)
            opts[key.lower()] = value
    return interface, opts


def _acts(line):
    """Action table the adopt rule's control gives."""
    if line.actions is not None:
        return line.actions
    return keyword_table('required')


def model_acts_for(line, service):
    """True when the adopt rule acts for PAM service ``service`` (option
    ``service``, default sshd; ``*`` = every service)."""
    _interface, opts = adopt_rule_facts(line)
    wanted = opts.get('service', 'sshd')
    return wanted == '*' or wanted == service


def model_line(line, acting=True):
    """One PAM rule that answers like ``line`` (an adopt rule) for a user
    without a job.  ``acting`` False models the rule in a service it does
    not act for (PAM_IGNORE / pam_exec success for everyone)."""
    interface, opts = adopt_rule_facts(line)
    acts = _acts(line)
    ignore_jobs = opts.get('action_no_jobs', 'deny').lower().startswith('i')
    ptype = line.type or 'account'
    tag = ' # hpc.slurm_adopt:model'
    if interface == 'pam_exec':
        # pam_exec maps exit 0 to PAM_SUCCESS and every other status to
        # PAM_SYSTEM_ERR; the module exits 0 for root and for "ignore"
        if not acting or ignore_jobs:
            return '%s [default=%s] pam_permit.so%s' % (ptype, acts['success'], tag)
        return ('%s %s pam_exec.so quiet /bin/sh -c [test "$PAM_USER" = root]%s'
                % (ptype, _control_text(acts), tag))
    if not acting or ignore_jobs:
        # pam_warn answers PAM_IGNORE to everyone: the rule's own control decides, exactly
        return '%s %s pam_warn.so%s' % (ptype, _control_text(acts), tag)
    # root -> PAM_IGNORE (ignore_root is always 1), others -> PAM_PERM_DENIED.  pam_access
    # answers PAM_SUCCESS for root: exact for every control whose action for PAM_IGNORE is
    # ignore, bad, die, reset or a jump; a control that maps it to ok or done (never
    # written by pam_adopt) would make libpam keep PAM_IGNORE as the result for root
    return ('%s [success=%s default=%s] pam_access.so accessfile=%s nodefgroup%s'
            % (ptype, acts['ignore'], acts['perm_denied'], MODEL_ACCESS_FILE, tag))


def _control_text(acts):
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import render_control
    return render_control(acts)


def modelled(content, path, service):
    """``content`` with every adopt rule replaced by its model for PAM
    service ``service`` (same number of rules)."""
    pfile = parse(content, path)
    out = []
    for line in pfile.lines:
        if line.kind == 'rule' and is_adopt_rule(line):
            out.append(model_line(line, model_acts_for(line, service)) + '\n')
        else:
            out.append(line.raw)
    text = ''.join(out)
    if out and not out[-1].endswith('\n'):
        text += '\n'
    return text


# --------------------------------------------------------------------------
# Staging


def _copy_tree_materialised(root, directory, dest):
    """Copy the PAM files of ``directory`` (as seen in ``root``) into
    ``dest`` as regular files (symlinks followed inside root)."""
    host = rooted(root, directory)
    if not os.path.isdir(host):
        return False
    os.makedirs(dest)
    for name in sorted(os.listdir(host)):
        src = resolve_host(root, os.path.join(directory, name))
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(dest, name))
    return True


def is_image(root):
    """True when ``root`` holds an OS with its own libpam and python (an
    image): the evaluator then chroots into it and runs its modules.  A
    config-only tree is evaluated with this machine's libpam and modules."""
    if root in (None, '', '/'):
        return False
    has_python = any(os.path.isfile(rooted(root, p)) and os.path.getsize(rooted(root, p)) > 0
                     for p in ('/usr/bin/python3', '/usr/libexec/platform-python'))
    has_libpam = False
    for pattern in ('/usr/lib/*/libpam.so.0', '/lib/*/libpam.so.0', '/usr/lib64/libpam.so.0', '/lib64/libpam.so.0',
                    '/usr/lib/libpam.so.0'):
        import glob
        if glob.glob(rooted(root, pattern)):
            has_libpam = True
    return has_python and has_libpam


def stage(root, contents, dest, service, pamd_dir='/etc/pam.d', vendor_dir='/usr/lib/pam.d'):
    """Write a tree for the evaluator below ``dest``: ``root``'s pam.d,
    vendor dir and /etc/security, with ``contents`` (PAM path -> text, None =
    absent) applied and every adopt rule replaced by its model for PAM
    service ``service``.  Config-only trees also get their users
    (passwd/group/shadow/login.defs; only root when they have none).
    Returns the binds for files outside those directories."""
    binds = {}
    pamd = os.path.join(dest, 'etc', 'pam.d')
    if not _copy_tree_materialised(root, pamd_dir, pamd):
        os.makedirs(pamd)
    if vendor_dir:
        _copy_tree_materialised(root, vendor_dir, os.path.join(dest, 'usr', 'lib', 'pam.d'))
    sec = os.path.join(dest, 'etc', 'security')
    if os.path.isdir(rooted(root, '/etc/security')):
        shutil.copytree(rooted(root, '/etc/security'), sec, symlinks=True)
    else:
        os.makedirs(sec)
    if not is_image(root) and root not in (None, '', '/') and _read(root, '/etc/passwd') is not None:
        # a config tree with users of its own: those users (a tree with PAM
        # files only is judged with this machine's users)
        for name, default, mode in (('passwd', None, 0o644), ('group', 'root:x:0:\n', 0o644),
                                    ('shadow', None, 0o640), ('login.defs', None, 0o644)):
            text = _read(root, '/etc/' + name)
            if text is None and name == 'shadow':
                text = ''.join('%s:*:19000:0:99999:7:::\n' % ln.split(':', 1)[0]
                               for ln in _read(root, '/etc/passwd').splitlines() if ':' in ln)
            if text is None:
                text = default
            if text is None:
                continue
            with open(os.path.join(dest, 'etc', name), 'w') as handle:
                handle.write(text)
            os.chmod(os.path.join(dest, 'etc', name), mode)
    for path, content in sorted(contents.items()):
        for prefix, below in ((pamd_dir, pamd), (vendor_dir, os.path.join(dest, 'usr', 'lib', 'pam.d')),
                              ('/etc/security', sec)):
            if prefix and path.startswith(prefix.rstrip('/') + '/'):
                target = os.path.join(below, path[len(prefix.rstrip('/')) + 1:])
                break
        else:
            target = None
        if target is None:
            if content is None or (not is_image(root) and root not in (None, '', '/')):
                continue        # config-only trees: _relocated() points the rules at a copy
            extra = os.path.join(dest, 'binds', path.lstrip('/'))
            os.makedirs(os.path.dirname(extra))
            with open(extra, 'w') as handle:
                handle.write(content)
            binds[path] = extra
            continue
        if content is None:
            if os.path.lexists(target):
                os.unlink(target)
            continue
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target))
        if os.path.lexists(target):
            os.unlink(target)
        with open(target, 'w') as handle:
            handle.write(content)
        os.chmod(target, 0o644)
    relocate = not is_image(root) and root not in (None, '', '/')
    for directory in (pamd, os.path.join(dest, 'usr', 'lib', 'pam.d')):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            with open(path, 'rb') as handle:
                text = handle.read().decode('utf-8', 'surrogateescape')
            new = modelled(text, path, service)
            if relocate:
                new = _relocated(new, root, dest, contents)
            if new != text:
                with open(path, 'wb') as handle:
                    handle.write(new.encode('utf-8', 'surrogateescape'))
    with open(os.path.join(sec, os.path.basename(MODEL_ACCESS_FILE)), 'w') as handle:
        handle.write(MODEL_ACCESS_TEXT)
    return binds


FILE_ARGS = ('file', 'accessfile', 'conffile')
STAGED_DIRS = ('/etc/pam.d/', '/usr/lib/pam.d/', '/etc/security/')


def _relocated(text, root, dest, contents):
    """For a config-only tree (this machine's modules, the tree's files):
    module arguments naming a file outside the staged directories
    (``file=/etc/ssh/denied``) are pointed at a copy of the tree's file
    under the staged /etc/security, or at a path that does not exist when
    the tree has no such file, never at this machine's file."""
    pfile = parse(text)
    out = []
    for line in pfile.lines:
        raw = line.raw
        if line.kind == 'rule':
            for arg in line.args:
                key, _sep, value = arg.partition('=')
                if key not in FILE_ARGS or not value.startswith('/') or value.startswith(STAGED_DIRS):
                    continue
                inside = '/etc/security/.tree' + value
                src = contents.get(value) if value in contents else _read(root, value)
                if src is not None:
                    target = os.path.join(dest, inside.lstrip('/'))
                    if not os.path.isdir(os.path.dirname(target)):
                        os.makedirs(os.path.dirname(target))
                    with open(target, 'w') as handle:
                        handle.write(src)
                raw = raw.replace(arg, '%s=%s' % (key, inside))
        out.append(raw)
    return ''.join(out)


# --------------------------------------------------------------------------
# What to evaluate


def _signature(stack):
    return tuple((e.kind, e.substack_depth, e.line.path, e.line.text.strip()) for e in stack.entries) + \
        (tuple(stack.errors),)


def stacks_to_check(before_src, after_src, services, extra_services=()):
    """[(service, type)] whose effective stack differs between the two
    sources, plus the account stack of every service in ``services``."""
    names = sorted(set(before_src.list_services()) | set(after_src.list_services()))
    out = []
    for name in names:
        for ptype in PAM_TYPES:
            if name in services and ptype == 'account':
                out.append((name, ptype))
                continue
            try:
                b = _signature(effective_stack(before_src, name, ptype))
                a = _signature(effective_stack(after_src, name, ptype))
            except (IOError, OSError):
                continue
            if a != b:
                out.append((name, ptype))
    for name in extra_services:
        if (name, 'account') not in out:
            out.append((name, 'account'))
    return out


# --------------------------------------------------------------------------
# The guard


def _adopt_lines(source, files):
    out = []
    for path in files:
        try:
            pfile = source.load(path)
        except (IOError, OSError):
            continue
        out.extend(ln for ln in pfile.lines if ln.kind == 'rule' and is_adopt_rule(ln))
    return out


def _variant(source, service):
    """Which adopt rules act for ``service`` in ``source`` (a hashable key)."""
    lines = []
    for ptype in PAM_TYPES:
        for entry in effective_stack(source, service, ptype).entries:
            if entry.kind == 'rule' and is_adopt_rule(entry.line):
                lines.append((entry.line.path, entry.line.lineno, model_acts_for(entry.line, service)))
    return tuple(sorted(set(lines)))


def _run_side(root, contents, src, queries_by_service, pamd_dir, vendor_dir, probe_users, timeout):
    """Evaluate the queries on one side (before or after): one staged tree
    per group of services whose adopt rules act the same way."""
    groups = {}
    for service, queries in queries_by_service.items():
        groups.setdefault(_variant(src, service), []).append(service)
    results = []
    image = is_image(root)
    for _key, services in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        work = tempfile.mkdtemp(prefix='slurm-adopt-guard-')
        try:
            tree = os.path.join(work, 'tree')
            os.mkdir(tree)
            binds = stage(root, contents, tree, services[0], pamd_dir, vendor_dir)
            queries = [q for s in services for q in queries_by_service[s]]
            out = evaluate(queries, tree=tree, root=root if image else None, probe_users=probe_users,
                           binds=binds or None, timeout=timeout, module_overlay=MODULE_OVERLAY or None)
            results.extend(out['results'])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return results


def lockout_guard(root, before_contents, after_contents, before_src, after_src, services, users, facts,
                  pamd_dir='/etc/pam.d', vendor_dir='/usr/lib/pam.d', timeout=10.0, rhost='192.0.2.1',
                  released=()):
    """Run the real libpam on the trees before and after.

    ``before_contents``/``after_contents``: PAM path -> text (None: absent)
    for the files that differ from the node.  Returns dict(problems=[...],
    let_in=[...], results=[...], probe={...}, checked=[(service, type)]).

    * ``problems``: an answer of a ``users`` member or of the probe that
      changed (other than the probe's account answer in ``services`` and in
      ``released``, services whose files return to what they were), or a
      ``users`` member not let in by a service in ``services``;
    * ``let_in``: a service in ``services`` whose account stack lets the
      probe (an ordinary user without a job) in after the edit.

    Raises GuardError when the evaluator cannot run."""
    uid, why = facts.first_regular_uid()
    probe = {'name': PROBE_USER, 'uid': uid, 'gid': uid, 'home': '/home/' + PROBE_USER}
    checked = stacks_to_check(before_src, after_src, services)
    per_service = {}
    for service, ptype in checked:
        for user in list(users) + [PROBE_USER]:
            per_service.setdefault(service, []).append({
                'service': service, 'user': user, 'op': OP_OF_TYPE[ptype], 'rhost': rhost,
                'labels': {'type': ptype}})
    out = {}
    errors = []

    def side(name, contents, src):
        try:
            out[name] = _run_side(root, contents, src, per_service, pamd_dir, vendor_dir, [probe], timeout)
        except EvalError as exc:
            errors.append(str(exc))
        except Exception as exc:  # pylint: disable=broad-except
            errors.append('%s: %s' % (exc.__class__.__name__, exc))

    threads = [threading.Thread(target=side, args=('after', after_contents, after_src))]
    if before_contents is not None:
        threads.append(threading.Thread(target=side, args=('before', before_contents, before_src)))
    else:
        out['before'] = []
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise GuardError('; '.join(errors))

    def key(res):
        q = res['query']
        return (q['service'], q['user'], q['op'])

    before = dict((key(r), r) for r in out['before'])
    after = dict((key(r), r) for r in out['after'])
    problems = []
    notes = []
    let_in = []
    for k in sorted(after):
        service, user, op = k
        b, a = before.get(k), after[k]
        bname, aname = (b or {}).get('rc_name'), a.get('rc_name')
        if service in services and op == 'account':
            if user == PROBE_USER:
                if aname in LET_IN:
                    let_in.append(service)
                continue
            if aname in LET_IN:
                if bname != aname and bname not in LET_IN:
                    notes.append('%s was refused by %s before (account: %s) and is let in now by the admin access '
                                 'rules' % (user, service, bname))
                continue
            if aname not in LET_IN:
                if bname == aname:
                    notes.append('%s is already refused by %s (account: %s) before the edit; the guard cannot '
                                 'protect that login' % (user, service, aname))
                else:
                    problems.append('%s would be DENIED by %s (account: %s; before: %s)'
                                    % (user, service, aname, bname))
                continue
        if user == PROBE_USER and service in released and op == 'account':
            continue        # a service given back as it was: its answers for users without a job return
        if b is not None and bname != aname:
            who = 'an ordinary user without a job (%s, uid %d)' % (PROBE_USER, uid) if user == PROBE_USER else user
            problems.append('%s: %s for %s changes from %s to %s' % (service, op, who, bname, aname))
    return {'problems': problems, 'notes': notes, 'let_in': let_in, 'probe': {'name': PROBE_USER, 'uid': uid, 'why': why},
            'checked': checked, 'results': out['after'], 'before': out['before']}


def evaluator_ready():
    """None when the evaluator can run here, else why not."""
    if os.geteuid() != 0:
        return 'the real-libpam check needs root (mount namespace, bind mounts)'
    if not hasattr(os, 'unshare') and not os.path.exists('/proc/self/ns/mnt'):
        return 'this kernel has no mount namespaces'
    return None


__all__ = ['GuardError', 'SiteFacts', 'site_facts', 'model_line', 'modelled', 'stage', 'lockout_guard',
           'stacks_to_check', 'evaluator_ready', 'is_image', 'FileSource', 'PROBE_USER', 'MODEL_ACCESS_FILE']
