# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planning, validating and writing the pam_slurm_adopt PAM edits.

Nothing here writes until :func:`commit` is called with a complete plan:
every file is computed first, the result is re-parsed and validated (and
judged by the real libpam, module_utils/_pam_guard), and only then written
(one file after the other through a writer, the files already written put
back if a later write fails).  Originals are kept under a state directory
so that ``state=absent`` can restore them byte for byte.

What an edit may do (docs/pam.md has the why and the measurements):

* add the adopt block (optional pam_listfile, the adopt rule, optional
  pam_access with our own ``accessfile=``) after the last account line of
  the **service file**;
* in the service file, turn ``account include F`` / ``@include F`` into
  ``account substack F`` (other types of an ``@include`` stay included)
  when F holds a rule that could end the stack before the adopt rule, so
  that such a rule ends only the substack and everybody meets the adopt
  rule; F itself is not edited;
* in the service file, turn a rule's ``done`` into a jump to the adopt
  block (``sufficient pam_localuser.so`` -> ``[success=N ...]``) when every
  rule it skips is in the service file; adjust the count of a jump of the
  service file that crosses a converted include so it lands where it did;
* replace a rule it must switch off (another pam_slurm_adopt, pam_systemd,
  pam_elogind) by a neutral placeholder of the same type
  (``[default=ignore] pam_permit.so``), so no jump changes its target.

Every changed line keeps the original as a comment (``#hpc.slurm_adopt:
<reason># ...``) followed by the new line (``... # hpc.slurm_adopt:<tag>``):
:func:`unmark` restores the file exactly.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import tempfile

from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import (
    MARK, ADDED_TAG_RE, DISABLED_RE, BLOCK_BEGIN, BLOCK_END, RETURN_VALUES,
    FileSource, PamFile, resolve_host, effective_stack, analyse_account, reachable_files,
    is_adopt_rule, classify_terminator, render_control, succeed_if_uid_limit,
)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_guard import (
    GuardError, SiteFacts, lockout_guard, evaluator_ready, PROBE_USER,
)

ADOPT_OPTION_NAMES = (
    'action_no_jobs', 'action_unknown', 'action_adopt_failure',
    'action_generic_failure', 'disable_x11', 'log_level', 'nodename',
    'service', 'join_container', 'single_job_skip_rpc', 'ignore_root')

CLIENT_MODULE = 'pam_slurm_adopt_client.so'

DEFAULT_MODULE_DIRS = (
    '/lib/security', '/lib64/security', '/usr/lib/security', '/usr/lib64/security',
    '/lib/*-linux-gnu*/security', '/usr/lib/*-linux-gnu*/security')

DEFAULT_ACCESS_FILE = '/etc/security/slurm-adopt-access.conf'
SHARED_ACCESS_FILE = '/etc/security/access.conf'
ACCESS_HEADER = ('# hpc.slurm_adopt: who may log in without a Slurm job (pam_access, first match wins).\n'
                 '# Managed by Ansible (role hpc.slurm_adopt.adopt_pam): the whole file is rewritten.\n')
SESSION_MODULES = ('pam_systemd.so', 'pam_elogind.so')
PLACEHOLDER = '%s [default=ignore] pam_permit.so'


class PlanError(Exception):
    """The requested change cannot be made safely; nothing was written."""


def sha256(data):
    if data is None:
        return None
    if not isinstance(data, bytes):
        data = data.encode('utf-8', 'surrogateescape')
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# Marker handling


def unmark(content):
    """Undo every change this collection makes to a file's text: drop the
    lines it added, re-enable the lines it disabled, drop its marked block
    (left in access.conf by versions before 0.2)."""
    if content is None:
        return None
    out = []
    strip_final_newline = False
    in_block = False
    for phys in content.splitlines(True):
        body = phys.rstrip('\n')
        if body.startswith(BLOCK_BEGIN):
            in_block = True
            continue
        if in_block:
            if body.startswith(BLOCK_END):
                in_block = False
            continue
        m = ADDED_TAG_RE.search(body)
        if m and not body.lstrip(' \t').startswith('#'):
            if m.group(2):
                strip_final_newline = True
            continue
        d = DISABLED_RE.match(phys)
        if d:
            out.append(phys[d.end():])
            continue
        out.append(phys)
    text = ''.join(out)
    if strip_final_newline and text.endswith('\n'):
        text = text[:-1]
    return text


def has_marks(content):
    return content is not None and content != unmark(content)


def render_args(args):
    out = []
    for arg in args:
        if not arg or re.search(r'[\s\[]', arg) or arg.startswith('['):
            out.append('[%s]' % arg.replace(']', '\\]'))
        else:
            out.append(arg)
    return out


def render_rule(ptype, control, module, args, tag, dash=False):
    words = [('-' if dash else '') + ptype, control, module] + render_args(args)
    return '%s # %s:%s' % (' '.join(words), MARK, tag)


# --------------------------------------------------------------------------
# Parameters -> rule lines


def _check_word(what, value):
    if not value or re.search(r'[\s#\[\]\\]', value):
        raise PlanError('%s %r must be non-empty and contain no blanks, "#", "[", "]" or "\\"' % (what, value))


def adopt_rule_words(params):
    """(module, args) of the adopt rule for the chosen interface."""
    options = []
    for key, value in (params.get('options') or {}).items():
        if value is None:
            continue
        if key not in ADOPT_OPTION_NAMES:
            raise PlanError('unknown pam_slurm_adopt option %r (known: %s)' % (key, ', '.join(ADOPT_OPTION_NAMES)))
        if isinstance(value, bool):
            value = '1' if value else '0'
        value = str(value)
        _check_word('value of option %s' % key, value)
        options.append('%s=%s' % (key, value))
    script = params['script']
    _check_word('script', script)
    if params['interface'] == 'pam_python':
        return 'pam_python.so', [script] + options
    if params['interface'] == 'service':
        # the C client of the adoption service (docs/service.md), installed in
        # the PAM module directory: named without a path, options as the C module's
        return CLIENT_MODULE, options
    args = []
    for arg in params.get('pam_exec_args') or []:
        _check_word('pam_exec argument', arg)
        args.append(arg)
    env = params.get('pam_exec_env') or {}
    if env:
        args.append('/usr/bin/env')
        for key in sorted(env):
            if not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', key):
                raise PlanError('pam_exec_env: bad variable name %r' % key)
            _check_word('pam_exec_env value', str(env[key]))
            args.append('%s=%s' % (key, env[key]))
    python = params['python']
    _check_word('python', python)
    # -I -S: no PYTHON* variables, no user site, no site.py: nothing from the
    # environment pam_exec hands down decides what runs as root (issue 9 item 6)
    return 'pam_exec.so', args + [python, '-I', '-S', script, 'pam-exec'] + options


def desired_lines(params):
    """The managed account lines, in order, as (text, module, dash)."""
    module, args = adopt_rule_words(params)
    control = params['control']
    lines = []
    if params['admin_access'] == 'pam_listfile':
        _check_word('listfile_path', params['listfile_path'])
        lines.append((render_rule('account', 'sufficient', 'pam_listfile.so',
                                  ['item=user', 'sense=allow', 'onerr=fail',
                                   'file=%s' % params['listfile_path']], 'admin_access'),
                      'pam_listfile.so', False))
    lines.append((render_rule('account', control, module, args, 'adopt', params['dash']), module, params['dash']))
    if params['admin_access'] == 'pam_access':
        _check_word('access_file', params['access_file'])
        lines.append((render_rule('account', 'required', 'pam_access.so',
                                  ['accessfile=%s' % params['access_file']], 'admin_access'),
                      'pam_access.so', False))
    return lines


# --------------------------------------------------------------------------
# Admin access


def parse_access_rule(rule):
    """(permission, users, origins) of a pam_access rule, or PlanError."""
    parts = rule.split(':', 2)
    if len(parts) < 3 or parts[0].strip() not in ('+', '-') or not parts[1].strip() or not parts[2].strip():
        raise PlanError('access rule %r is not "+|-:users:origins"' % rule)
    return parts[0].strip(), parts[1].strip(), parts[2].strip()


def check_access_rules(rules):
    """Refuse rule lists that let everyone in: empty, or not ending with a
    rule that denies every user from everywhere."""
    if not rules:
        raise PlanError('access_rules is empty: pam_access with no rule lets every user without a job in. '
                        'Give the administrators, then a final "-:ALL:ALL", e.g. '
                        '["+:root:ALL", "+:wheel:ALL", "-:ALL:ALL"]')
    parsed = [parse_access_rule(r) for r in rules]
    perm, users, origins = parsed[-1]
    if perm != '-' or users.split() != ['ALL'] or origins.split() != ['ALL']:
        raise PlanError('access_rules must end with a rule that denies everybody else, "-:ALL:ALL" (the last rule '
                        'is %r): without it pam_access lets every user without a job in' % rules[-1])
    for rule, (perm, users, origins) in zip(rules, parsed):
        if re.search(r'[\r\n]', rule):
            raise PlanError('access rule %r spans several lines' % rule)
    return parsed


def access_file_content(rules):
    return ACCESS_HEADER + ''.join('%s\n' % r for r in rules)


def access_allows(rules, user, groups):
    """First-match evaluation of pam_access rules for ``user`` from any
    origin (only rules whose origin list contains ALL are trusted to match
    every connection).  True/False, or None when it cannot tell."""
    for rule in rules:
        perm, users, origins = [p.strip() for p in rule.split(':', 2)]
        words = users.split()
        if 'EXCEPT' in words:
            return None
        hit = False
        for word in words:
            name = word.strip('()')
            if word == 'ALL' or word == user:
                hit = True
            elif name.startswith('@'):
                return None
            elif groups and name in groups:
                hit = True
        if not hit:
            continue
        if 'ALL' not in origins.split():
            return None
        return perm == '+'
    return True


def check_lockout(params, facts):
    """Static guard: refuse when a user in ``ensure_access_for`` would not
    be let in by the bypass itself (groups read from the tree of ``root``).
    The real-libpam guard then judges the whole stack."""
    problems = []
    for user in params.get('ensure_access_for') or []:
        mode = params['admin_access']
        if mode == 'pam_listfile':
            if user not in (params.get('listfile_users') or []):
                problems.append('%s is not in listfile_users' % user)
        elif mode == 'pam_access':
            groups = facts.user_groups(user)
            if groups is None and not facts.nss and not facts.has_passwd:
                continue    # a tree with PAM files only: the real-libpam guard judges with this machine's users
            if groups is None:
                problems.append('%s is not a user of %s' % (user, 'this node' if facts.nss else
                                                            'the tree %s' % facts.root))
                continue
            verdict = access_allows(params.get('access_rules') or [], user, groups)
            if verdict is None:
                problems.append('cannot tell whether access_rules let %s in' % user)
            elif not verdict:
                problems.append('access_rules deny %s (groups: %s)' % (user, ', '.join(sorted(groups)) or 'none'))
        elif user != 'root':
            problems.append('%s has no admin bypass (admin_access=none)' % user)
    if problems:
        raise PlanError('lockout guard: ' + '; '.join(problems) +
                        '. These users would be refused by pam_slurm_adopt when they have no job.')


# --------------------------------------------------------------------------
# Module existence


def module_exists(root, module, module_dirs):
    def rooted(path):
        return path if root in ('', '/') else os.path.join(root, path.lstrip('/'))
    if module.startswith('/'):
        return os.path.exists(rooted(module))
    for pattern in module_dirs or DEFAULT_MODULE_DIRS:
        for directory in glob.glob(rooted(pattern)):
            if os.path.exists(os.path.join(directory, module)):
                return True
    return False


# --------------------------------------------------------------------------
# Generators and vendor files


def generator_of(source, path, content):
    """(name, message) when ``path`` is written by a tool that will undo a
    local edit, else None."""
    host = source.host_path(path)
    rel_host = host[len(source.root.rstrip('/')):] if source.root not in ('', '/') else host
    head = content[:400] if content else ''
    if head.startswith('# Generated by authselect') or rel_host.startswith('/etc/authselect/'):
        return ('authselect', '%s is generated by authselect: "authselect select" or "apply-changes" undoes an edit. '
                'Run role hpc.slurm_adopt.adopt_pam (it makes the change in a custom authselect profile: '
                '"authselect create-profile slurm-adopt -b <current profile>", edit its template, '
                '"authselect select custom/slurm-adopt <features>")' % path)
    if 'pam-auth-update' in (content or '') and ('# end of pam-auth-update config' in content or
                                                 '# here are the per-package modules' in content):
        return ('pam-auth-update', '%s is generated by pam-auth-update: "pam-auth-update --force" or a package '
                'upgrade undoes an edit. Run "pam-auth-update --disable systemd" (role hpc.slurm_adopt.adopt_pam '
                'installs a profile that keeps it disabled)' % path)
    if 'autogenerated by pam-config' in head or os.path.basename(rel_host).endswith('-pc'):
        return ('pam-config', '%s is generated by pam-config: the next pam-config run undoes an edit. Run '
                '"pam-config --delete --systemd" (and "pam-config --delete --elogind" where used) first' % path)
    return None


# --------------------------------------------------------------------------
# Editing one PAM file


class FileEdit(object):
    """Edits of one PAM file, against its unmarked content."""

    def __init__(self, pfile, target=None):
        self.pfile = pfile
        self.target = target or pfile.path        # where the result is written (vendor -> /etc/pam.d copy)
        self.replace = {}                         # id(line) -> (reason, replacement text or None)
        self.insert_after = None                  # physical line number, 0 = top
        self.insert_text = ''

    def set(self, line, reason, text):
        self.replace[id(line)] = (reason, text)

    def render(self):
        """(content, origin) where origin[i] is the original line number of
        physical line i+1 of the result (None for the adopt block)."""
        out = []
        origin = []

        def emit(text, orig):
            if out and not out[-1].endswith('\n'):
                out[-1] += '\n'
                text = _tag_last_eof(text)
            out.append(text)
            origin.extend([orig] * len(text.splitlines(True)))

        if self.insert_after == 0:
            emit(self.insert_text, None)
        pending = self.insert_after is not None and self.insert_after != 0
        for line in self.pfile.lines:
            if id(line) in self.replace:
                reason, text = self.replace[id(line)]
                emit(''.join('#%s:%s# %s' % (MARK, reason, phys) for phys in line.physical), line.lineno)
                if text:
                    emit(text + '\n', line.lineno)
            else:
                emit(line.raw, line.lineno)
            if pending and line.end_lineno >= self.insert_after:
                emit(self.insert_text, None)
                pending = False
        if pending:
            emit(self.insert_text, None)
        return ''.join(out), origin


def _tag_last_eof(text):
    lines = text.splitlines(True)
    for idx in range(len(lines) - 1, -1, -1):
        if ADDED_TAG_RE.search(lines[idx].rstrip('\n')):
            lines[idx] = lines[idx].rstrip('\n') + '+eofnl\n'
            break
    return ''.join(lines)


def _rebuild(pfile, disable=None, insert_after=None, insert_text=''):
    """Text of ``pfile`` with lines disabled (dict id(line)->reason) and
    ``insert_text`` inserted after physical line ``insert_after``."""
    edit = FileEdit(pfile)
    for key, reason in (disable or {}).items():
        edit.replace[key] = (reason, None)
    edit.insert_after = insert_after
    edit.insert_text = insert_text
    return edit.render()[0]


def _rule_text(line, control=None, keyword=None):
    """A rule like ``line`` with another control (or include keyword)."""
    words = [('-' if line.dash else '') + line.type, keyword or control or line.control, line.module]
    return ' '.join(words + render_args(line.args))


# --------------------------------------------------------------------------
# The plan


class Plan(object):
    def __init__(self):
        self.new = {}          # path -> new content (None = delete)
        self.old = {}          # path -> current content (None = absent)
        self.disabled = []     # rules switched off (placeholders)
        self.transformed = []  # rules rewritten (substack, jump)
        self.kept = []         # rules that can end the stack before adopt and were kept
        self.added = []        # dicts (file, line text)
        self.warnings = []
        self.restored = []
        self.generated = []    # (path, tool)
        self.copied = []       # (vendor path, pamd path)
        self.guard = {}        # what the real-libpam check did

    def changed_paths(self):
        return sorted(p for p in self.new if self.new[p] != self.old.get(p))


def _read_host(source, path):
    host = source.host_path(path)
    if not os.path.lexists(host):
        return None
    with open(host, 'rb') as handle:
        return handle.read().decode('utf-8', 'surrogateescape')


def load_manifest(source, state_dir):
    path = source.host_path(os.path.join(state_dir, 'manifest.json'))
    if not os.path.exists(path):
        return {'version': 1, 'files': {}}
    with open(path) as handle:
        return json.load(handle)


class BaseSource(FileSource):
    """The node's PAM files as they were before this collection touched them
    (every file read is unmarked); remembers what it read."""

    def __init__(self, source, planner):
        FileSource.__init__(self, source.root, source.pamd_dir, source.vendor_dir)
        self.planner = planner

    def read(self, path):
        return self.planner.base(path)


class Planner(object):

    def __init__(self, params, source):
        self.params = params
        self.source = source
        self.plan = Plan()
        self.current = {}      # path -> content on the node (None: absent)
        self.bases = {}        # path -> unmarked content
        self.edits = {}        # pam path (as analysed) -> FileEdit
        self.view = BaseSource(source, self)
        self.released = []     # files given back as they were before us (a service no longer adopted)

    def base(self, path):
        if path not in self.bases:
            current = _read_host(self.source, path)
            self.current[path] = current
            if current is None:
                raise IOError('no such file: %s' % path)
            self.bases[path] = unmark(current)
        return self.bases[path]

    def edit(self, path):
        if path not in self.edits:
            target = path
            vendor = self.source.vendor_dir
            if vendor and path.startswith(vendor.rstrip('/') + '/'):
                target = os.path.join(self.source.pamd_dir, os.path.basename(path))
            self.edits[path] = FileEdit(self.view.load(path), target)
        return self.edits[path]

    # -- helpers

    def placeholder(self, line, reason, service, classification, why):
        edit = self.edit(line.path)
        if id(line) in edit.replace:
            return
        edit.set(line, reason, '%s # %s:placeholder' % (PLACEHOLDER % line.type, MARK))
        self.plan.disabled.append(dict(line.to_dict(), service=service, classification=classification, reason=why))

    def render(self):
        """{target: content}, {target: origin}, {analysed path: target}."""
        contents, origins, alias = {}, {}, {}
        for path, edit in self.edits.items():
            content, origin = edit.render()
            contents[edit.target] = content
            origins[edit.target] = origin
            alias[path] = edit.target
        return contents, origins, alias

    def after_source(self, contents):
        overrides = dict(self.bases)
        overrides.update(contents)
        return self.source.with_overrides(overrides)


def plan_present(params, source=None):
    """Compute every file; raise PlanError if the result would be unsafe."""
    if source is None:
        source = FileSource(params['root'], params['pamd_dir'], params['vendor_dir'])
    planner = Planner(params, source)
    plan = planner.plan
    lines = desired_lines(params)
    facts = SiteFacts(params['root'], params.get('directory_uid_min'))
    if params['admin_access'] == 'pam_access':
        if params['access_file'] == SHARED_ACCESS_FILE:
            raise PlanError('access_file %s is shared by every service that uses pam_access: rules for '
                            'pam_slurm_adopt there change who may use cron, su, login ... Use a file of its own '
                            '(the default %s)' % (SHARED_ACCESS_FILE, DEFAULT_ACCESS_FILE))
        check_access_rules(params['access_rules'])
    if params['admin_access'] == 'pam_listfile':
        for user in params['listfile_users']:
            _check_word('listfile user', user)
    check_lockout(params, facts)
    manifest = load_manifest(source, params['state_dir'])
    for path, meta in manifest.get('files', {}).items():
        if meta.get('kind', 'pam') == 'pam' and _read_host(source, path) is not None:
            planner.base(path)

    block = ''.join(t + '\n' for t, _m, _d in lines)
    for service in params['services']:
        _plan_service(planner, service, block)
    if params['pam_systemd'] == 'disable':
        for service in list(params['services']) + list(params.get('pam_systemd_services') or []):
            _plan_session_modules(planner, service)

    contents, origins, alias = planner.render()
    contents, origins = _repair_jumps(planner, contents, origins, alias)
    after = planner.after_source(contents)
    _validate(planner, after, contents, origins, alias, lines)

    # the computed PAM files (what is there already, up to blanks at line ends,
    # stays as it is: authselect writes our placeholders from role adopt_pam's
    # custom profile with its own spacing)
    for path, content in contents.items():
        plan.old[path] = _read_host(source, path)
        plan.new[path] = content
        if plan.old[path] is not None and _same_but_blanks(plan.old[path], content):
            plan.new[path] = plan.old[path]
    for vendor_path, edit in planner.edits.items():
        if edit.target != vendor_path:
            plan.copied.append((vendor_path, edit.target))
            plan.warnings.append('%s is a vendor file: edited as a copy in %s, which now hides the vendor file '
                                 '(package updates of it no longer take effect; compare after updates)'
                                 % (vendor_path, edit.target))
    # files edited by an earlier run that need nothing now: back to the base
    for path in planner.bases:
        if path not in plan.new and planner.current.get(path) != planner.bases[path]:
            plan.old[path] = planner.current[path]
            plan.new[path] = planner.bases[path]
            planner.released.append(os.path.basename(path))
    _check_generated(planner)
    _plan_admin_files(params, source, plan, manifest)
    _check_fail_open_static(planner, after)
    _run_guard(planner, after, facts)
    return plan


def _same_but_blanks(a, b):
    return [ln.rstrip(' \t') for ln in a.split('\n')] == [ln.rstrip(' \t') for ln in b.split('\n')]


def _subtree_ranges(stack, svc_path):
    """{id(include line of the service file): [start, end)} of the entries
    each include/@include of the service file brings into the stack."""
    ranges = {}
    for idx, entry in enumerate(stack.entries):
        if entry.chain and entry.chain[0].path == svc_path:
            head = entry.chain[0]
            if head.kind == 'atinclude' or head.keyword == 'include':
                start, end = ranges.get(id(head), (idx, idx + 1))
                ranges[id(head)] = (min(start, idx), max(end, idx + 1))
    return ranges


def _plan_service(planner, service, block):
    params, plan, src = planner.params, planner.plan, planner.view
    svc_path = src.service_path(service)
    if svc_path is None:
        raise PlanError('service %s: no PAM file (and no "other")' % service)
    if os.path.basename(svc_path) == 'other' and service != 'other':
        raise PlanError('service %s has no file of its own; refusing to edit "other"' % service)
    stack = effective_stack(src, service, 'account')
    if stack.errors:
        raise PlanError('service %s: the current account stack is broken, fix it first: %s'
                        % (service, '; '.join(stack.errors)))
    if stack.ambiguous:
        raise PlanError('service %s: %s continues a line across a blank or comment line, which Linux-PAM 1.5 and '
                        '1.6+ read differently; join the line or remove the blank/comment line first'
                        % (service, ', '.join('%s:%d' % (ln.path, ln.lineno) for ln in stack.ambiguous)))
    svc_file = src.load(svc_path)
    edit = planner.edit(svc_path)

    # 1. other pam_slurm_adopt rules: placeholders
    for entry in stack.entries:
        if entry.kind == 'rule' and is_adopt_rule(entry.line):
            if not params['replace_other_adopt_rules']:
                raise PlanError('%s:%d already runs pam_slurm_adopt (%s); set replace_other_adopt_rules'
                                % (entry.line.path, entry.line.lineno, entry.line.text.strip()))
            planner.placeholder(entry.line, 'other_adopt', service, 'other_adopt',
                                'another pam_slurm_adopt rule (replaced by a neutral placeholder)')

    acting = (params.get('options') or {}).get('service', 'sshd')
    if acting not in ('*', service):
        plan.warnings.append(
            'service %s: the adopt module acts only for service=%s (option service) and answers PAM_IGNORE (pam_exec: '
            'success) in %s, so nobody is adopted there%s; set options.service=* to adopt in every listed service'
            % (service, acting, service, ' and only the administrators get in' if params['admin_access'] ==
               'pam_access' else ''))

    # 2. what ends the stack early, in the service file and in what it includes
    top = stack.top_level()
    ranges = _subtree_ranges(stack, svc_path)
    own_rewrites = []      # (entry index, line, classification, reason)
    for idx in top:
        entry = stack.entries[idx]
        if entry.kind != 'rule' or entry.chain or is_adopt_rule(entry.line):
            continue
        found = classify_terminator(entry.line, None, idx, top, stack)
        if not found:
            continue
        cls, reason = found
        info = dict(entry.to_dict(), service=service, classification=cls, reason=reason)
        if cls in ('short_circuit', 'expired_password') and any('done' in r for r in reason.split(', ')):
            own_rewrites.append((idx, entry.line, cls, reason))
        elif cls in ('system_users', 'admin_bypass'):
            plan.kept.append(info)
        elif 'past the end' in reason:
            raise PlanError('%s:%d: %s: the stack already fails there; fix that line first'
                            % (entry.line.path, entry.line.lineno, reason))
    first_rewrite = min([r[0] for r in own_rewrites]) if own_rewrites else None
    convert = []
    for line in svc_file.lines:
        if id(line) not in ranges:
            continue
        start, end = ranges[id(line)]
        enders = []
        for idx in range(start, end):
            entry = stack.entries[idx]
            if entry.substack_depth != 0 or entry.kind != 'rule' or is_adopt_rule(entry.line):
                continue
            if any(entry.actions[v] == 'done' for v in RETURN_VALUES):
                found = classify_terminator(entry.line, None, idx, top, stack)
                enders.append(dict(entry.to_dict(), service=service,
                                   classification=found[0] if found else 'short_circuit',
                                   reason=found[1] if found else 'done'))
        if enders or (first_rewrite is not None and start > first_rewrite):
            convert.append((line, start, end, enders))
    if params['short_circuits'] == 'warn':
        for line, _s, _e, enders in convert:
            for term in enders:
                plan.kept.append(term)
                plan.warnings.append('%s:%d can end the account stack before pam_slurm_adopt (%s): %s'
                                     % (term['file'], term['line'], term['reason'], term['text']))
        for _idx, line, cls, reason in own_rewrites:
            plan.kept.append(dict(line.to_dict(), service=service, classification=cls, reason=reason))
            plan.warnings.append('%s:%d can end the account stack before pam_slurm_adopt (%s): %s'
                                 % (line.path, line.lineno, reason, line.text.strip()))
        convert, own_rewrites = [], []
    if params['short_circuits'] == 'fail' and (convert or own_rewrites):
        what = ['%s:%d %s' % (line.path, line.lineno, line.text.strip()) for _i, line, _c, _r in own_rewrites]
        for line, _s, _e, enders in convert:
            what.extend('%s:%d %s (through %s:%d)' % (t['file'], t['line'], t['text'], line.path, line.lineno)
                        for t in enders)
        raise PlanError('service %s: rules can end the account stack before pam_slurm_adopt: %s '
                        '(short_circuits=fail)' % (service, '; '.join(what)))

    # 3. includes -> substacks
    for line, start, end, enders in convert:
        _convert_include(planner, stack, service, line, start, end, enders)

    # 4. the adopt block after the last account line of the service file
    last = 0
    for entry in stack.entries:
        head = entry.chain[0] if entry.chain else entry.line
        if head.path == svc_path:
            last = max(last, head.end_lineno)
    if last == 0:
        last = svc_file.lines[-1].end_lineno if svc_file.lines else 0
    edit.insert_after = last
    edit.insert_text = block
    plan.added.extend({'file': edit.target, 'text': t, 'service': service} for t in block.splitlines())

    # 5. "done" of the service file's own short-circuits -> jump to the block
    for idx, line, cls, reason in own_rewrites:
        # a provisional count keeps the rule in place; _repair_jumps sets the real one
        table = dict((v, 1 if a == 'done' else a) for v, a in line.actions.items())
        edit.set(line, 'jump', '%s # %s:jump' % (_rule_text(line, render_control(table)), MARK))
        plan.transformed.append(dict(line.to_dict(), service=service, classification=cls, reason=reason,
                                     transformation='jump'))


def _convert_include(planner, stack, service, line, start, end, enders):
    """``account include F`` / ``@include F`` of the service file ->
    ``account substack F`` (other types of @include kept)."""
    src = planner.view
    name = line.module
    # a jump inside F that lands beyond F's end would fail the stack under
    # substack ("bad jump"), where under include it lands in the service file
    for idx in range(start, end):
        entry = stack.entries[idx]
        if entry.kind != 'rule' or entry.substack_depth != 0:
            continue
        for value in RETURN_VALUES:
            act = entry.actions[value]
            if isinstance(act, int):
                target = stack.next_after(idx, act)
                if target is None or target > end:
                    raise PlanError(
                        '%s:%d "%s" jumps (%s=%d) beyond the end of %s, into the rules of %s. '
                        'To let pam_slurm_adopt see every user, %s:%d must become "account substack %s", and a '
                        'substack cannot be left by a jump. Change that jump so it stays inside %s (or end the '
                        'file with the rule it jumps to), or set short_circuits=warn to keep the include'
                        % (entry.line.path, entry.line.lineno, entry.line.text.strip(), value, act, name,
                           line.path, line.path, line.lineno, name, name))
    # a jump from before F must not land inside F
    for idx in range(0, start):
        entry = stack.entries[idx]
        if entry.kind != 'rule' or entry.substack_depth != 0:
            continue
        for value in RETURN_VALUES:
            act = entry.actions[value]
            if isinstance(act, int):
                target = stack.next_after(idx, act)
                if target is not None and start < target < end:
                    raise PlanError(
                        '%s:%d "%s" jumps (%s=%d) into the middle of %s; %s:%d cannot become a substack. '
                        'Change that jump or set short_circuits=warn'
                        % (entry.line.path, entry.line.lineno, entry.line.text.strip(), value, act, name,
                           line.path, line.lineno))
                if target is not None and target >= end and entry.line.path != line.path:
                    raise PlanError(
                        '%s:%d "%s" jumps over %s from another file; converting %s:%d into a substack would '
                        'change where it lands. Change that jump or set short_circuits=warn'
                        % (entry.line.path, entry.line.lineno, entry.line.text.strip(), name,
                           line.path, line.lineno))
    target = src.locate(name)
    types = set()
    if line.kind == 'atinclude':
        pfile = src.load(target)
        if any(ln.kind == 'atinclude' for ln in pfile.lines):
            raise PlanError('%s:%d @include %s: %s itself uses @include, which cannot be turned into a substack '
                            'safely; write "account substack %s" and "<type> include %s" lines yourself, or set '
                            'short_circuits=warn' % (line.path, line.lineno, name, name, name, name))
        types = set(ln.type for ln in pfile.lines if ln.kind in ('rule', 'invalid') and ln.type) - set(['account'])
    text = 'account substack %s' % name
    extra = ''.join('\n%s include %s # %s:substack' % (t, name, MARK) for t in sorted(types))
    planner.edit(line.path).set(line, 'substack', '%s # %s:substack%s' % (text, MARK, extra))
    reasons = ', '.join('%s:%d (%s)' % (t['file'], t['line'], t['reason']) for t in enders) or \
        'a rule of the service file jumps over it to the adopt rule'
    planner.plan.transformed.append(dict(line.to_dict(), service=service, classification='include',
                                         reason='can end the stack before pam_slurm_adopt: %s' % reasons,
                                         transformation='substack'))


def _plan_session_modules(planner, service):
    src = planner.view
    if src.locate(service) is None:
        raise PlanError('pam_systemd_services: no PAM file %r' % service)
    for path in reachable_files(src, service):
        for line in src.load(path).lines:
            if line.kind == 'rule' and line.module_name in SESSION_MODULES and \
                    line.keyword not in ('include', 'substack'):
                name = line.module_name[:-3]
                planner.placeholder(line, name, service, 'pam_systemd',
                                    '%s moves the session out of the job cgroup (replaced by a neutral placeholder)'
                                    % name)


def _origin_key(alias, origins, path, lineno):
    """Identity of a line across the edit: (analysed path, original line)."""
    back = dict((v, k) for k, v in alias.items())
    if path in origins:
        orig = origins[path][lineno - 1] if lineno - 1 < len(origins[path]) else None
        return (back.get(path, path), orig if orig is not None else ('block', lineno))
    return (back.get(path, path), lineno)


def _landings(stack, keyof):
    """{(rule key, value): landing key} for every jump of the stack;
    landing key: a rule key, 'END' or 'BAD'."""
    out = {}
    for idx, entry in enumerate(stack.entries):
        if entry.kind != 'rule':
            continue
        for value in RETURN_VALUES:
            act = entry.actions[value]
            if isinstance(act, int):
                target = stack.next_after(idx, act)
                if target is None:
                    land = 'BAD'
                elif target >= len(stack.entries):
                    land = 'END'
                else:
                    land = keyof(stack.entries[target])
                out[(keyof(entry), value)] = land
    return out


def _repair_jumps(planner, contents, origins, alias):
    """Fill in the jump counts of rewritten short-circuits (to the adopt
    block) and fix the count of every jump of a service file whose landing
    moved because an include became a substack.  Returns the re-rendered
    contents and origins."""
    params = planner.params
    for _round in range(3):
        after = planner.after_source(contents)
        changed = False
        for service in params['services']:
            svc_before = planner.view.service_path(service)
            svc_target = alias.get(svc_before, svc_before)
            before = effective_stack(planner.view, service, 'account')
            now = effective_stack(after, service, 'account')

            def key_before(entry):
                return (entry.line.path, entry.line.lineno)

            def key_after(entry):
                return _origin_key(alias, origins, entry.line.path, entry.line.lineno)

            wanted = _landings(before, key_before)
            index_now = dict((key_after(e), i) for i, e in enumerate(now.entries) if e.kind == 'rule')
            block = [i for i, e in enumerate(now.entries) if e.line.path == svc_target and e.line.added_tag in
                     ('adopt', 'admin_access') and e.substack_depth == 0]
            if not block:
                raise PlanError('internal error: the adopt block is not in the computed stack of %s' % service)
            block_start = block[0]
            edit = planner.edits[svc_before]
            for line in edit.pfile.lines:
                if id(line) not in edit.replace:
                    continue
                reason, text = edit.replace[id(line)]
                if reason != 'jump':
                    continue
                idx = index_now.get((svc_before, line.lineno))
                if idx is None:
                    raise PlanError('internal error: %s:%d is not in the computed stack' % (line.path, line.lineno))
                count = _count_to(now, idx, block_start)
                if count is None:
                    raise PlanError('%s:%d "%s" ends the account stack before pam_slurm_adopt, and rules of another '
                                    'file lie between it and the adopt rule, so a jump to the adopt rule would not '
                                    'have a stable length. Move the rule, or set short_circuits=warn'
                                    % (line.path, line.lineno, line.text.strip()))
                table = dict(line.actions)
                for value in RETURN_VALUES:
                    if table[value] == 'done':
                        table[value] = count or 'ignore'
                    elif isinstance(table[value], int):
                        table[value] = _fixed_count(before, now, key_before, key_after, line, value, wanted, block_start)
                new = '%s # %s:jump' % (_rule_text(line, render_control(table)), MARK)
                if new != text:
                    edit.replace[id(line)] = ('jump', new)
                    changed = True
            # jumps of the service file whose landing moved (includes -> substacks,
            # the adopt block at the end)
            for idx, entry in enumerate(now.entries):
                if entry.kind != 'rule' or entry.line.path != svc_target or entry.line.added_tag:
                    continue
                k = key_after(entry)
                for value in RETURN_VALUES:
                    if (k, value) not in wanted or wanted[(k, value)] == 'BAD':
                        continue
                    want = wanted[(k, value)]
                    if want == 'END':
                        want_idx = block_start
                    else:
                        found = [i for i, e in enumerate(now.entries) if key_after(e) == want]
                        want_idx = now.normalise(found[0]) if found else None
                    if now.next_after(idx, entry.actions[value]) == want_idx:
                        continue
                    orig = [ln for ln in edit.pfile.lines if ln.lineno == k[1]][0]
                    if id(orig) in edit.replace and edit.replace[id(orig)][0] != 'jump':
                        raise PlanError('internal error: %s:%d is both replaced and jumping'
                                        % (orig.path, orig.lineno))
                    table = dict(orig.actions)
                    for val in RETURN_VALUES:
                        if isinstance(table[val], int):
                            table[val] = _fixed_count(before, now, key_before, key_after, orig, val, wanted,
                                                      block_start)
                    edit.replace[id(orig)] = ('jump', '%s # %s:jump' % (_rule_text(orig, render_control(table)),
                                                                        MARK))
                    planner.plan.transformed.append(dict(orig.to_dict(), service=service, classification='jump',
                                                         reason='keeps its target after an include became a '
                                                                'substack', transformation='jump_count'))
                    changed = True
                    break
        if not changed:
            return contents, origins
        contents, origins, alias = planner.render()
    raise PlanError('internal error: jump counts do not settle')


def _count_to(stack, idx, target):
    """The jump count from entry ``idx`` that lands on ``target``, counting
    only rules of the same file at the same level (stable), or None."""
    level = stack.entries[idx].substack_depth
    path = stack.entries[idx].line.path
    if stack.normalise(idx + 1) == target:
        return 0            # the next rule: "ignore" (a jump and ignore both leave the result as it is)
    for count in range(1, len(stack.entries) + 1):
        land = stack.next_after(idx, count)
        if land is None:
            return None
        if land == target:
            # every unit skipped must be of the same file (a substack counts once)
            for j in range(idx + 1, target):
                e = stack.entries[j]
                if e.substack_depth == level and e.line.path != path:
                    return None
            return count
        if land > target:
            return None
    return None


def _fixed_count(before, now, key_before, key_after, line, value, wanted, block_start):
    """New count for jump ``value`` of ``line`` so that it lands where it
    did before the edit (the end of the stack becomes the adopt block)."""
    land = wanted.get(((line.path, line.lineno), value))
    idx = [i for i, e in enumerate(now.entries) if e.kind == 'rule' and key_after(e) == (line.path, line.lineno)]
    if not idx:
        raise PlanError('internal error: %s:%d not found after the edit' % (line.path, line.lineno))
    idx = idx[0]
    if land == 'END':
        target = block_start
    elif land == 'BAD' or land is None:
        return line.actions[value]
    else:
        found = [i for i, e in enumerate(now.entries) if key_after(e) == land]
        if not found:
            raise PlanError('internal error: landing %r of %s:%d not found' % (land, line.path, line.lineno))
        target = now.normalise(found[0])
    if now.normalise(idx + 1) == target:
        return 'ignore'
    for count in range(1, len(now.entries) + 1):
        got = now.next_after(idx, count)
        if got == target:
            return count
        if got is None or got > target:
            break
    raise PlanError('%s:%d "%s": no jump count lands on the rule it reached before the edit; change it by hand'
                    % (line.path, line.lineno, line.text.strip()))


def _validate(planner, after, contents, origins, alias, lines):
    """Re-parse the computed files and refuse anything unsafe."""
    params, plan = planner.params, planner.plan
    back = dict((v, k) for k, v in alias.items())
    for path, content in contents.items():
        pfile = PamFile(path, content)
        base = planner.bases.get(back.get(path, path))
        before_invalid = len(PamFile(path, base).invalid()) if base is not None else 0
        if len(pfile.invalid()) > before_invalid:
            raise PlanError('internal error: the edit would make %s unparsable: %s'
                            % (path, '; '.join((ln.error or ln.control_error) for ln in pfile.invalid())))
        if base is not None and unmark(content) != base:
            raise PlanError('internal error: edit of %s is not reversible' % path)
    for service in params['services']:
        stack = effective_stack(after, service, 'account')
        if stack.errors:
            raise PlanError('service %s: computed account stack is broken: %s' % (service, '; '.join(stack.errors)))
        result = analyse_account(stack, lambda ln: ln.added_tag == 'adopt')
        if result['adopt_index'] is None:
            raise PlanError('service %s: the adopt rule is not in the computed account stack' % service)
        after_adopt = [e.line for e in result['after_adopt']]
        if any(ln.added_tag != 'admin_access' for ln in after_adopt):
            raise PlanError('service %s: the adopt rule would not be last in the account stack (followed by %s)'
                            % (service, ', '.join('%s:%d' % (ln.path, ln.lineno) for ln in after_adopt)))
        if params['short_circuits'] != 'warn':
            left = [t for t in result['terminators']
                    if t['classification'] in ('short_circuit', 'jump_past_adopt', 'expired_password')]
            if left:
                raise PlanError('service %s: rules still end the stack before adopt: %s'
                                % (service, ', '.join('%s:%d (%s)' % (t['file'], t['line'], t['reason'])
                                                      for t in left)))
    _check_jumps_kept(planner, after, origins, alias)
    missing = []
    for _text, module, dash in lines:
        if not module_exists(params['root'], module, params['module_dirs']):
            if dash and params['control'] == 'sufficient':
                # libpam: a missing "-" module answers PAM_MODULE_UNKNOWN, which
                # "sufficient" ignores: nobody is adopted, pam_access decides
                plan.warnings.append(
                    '%s is missing on the node: with "-account sufficient" Linux-PAM skips the adopt rule '
                    '(PAM_MODULE_UNKNOWN is ignored), so until it is installed nobody is adopted and users with a '
                    'job are refused by pam_access like everyone else without admin access' % module)
                continue
            missing.append(module)
    if params['interface'] == 'pam_exec' and not module_exists(params['root'], params['python'], None):
        missing.append(params['python'])
    if not module_exists(params['root'], params['script'], None):
        missing.append(params['script'])
    if missing:
        msg = ('refusing to write PAM rules whose module/program is missing on the node: %s '
               '(install it first, e.g. with role hpc.slurm_adopt.adopt_module; "-account" does not help: '
               'Linux-PAM then answers PAM_MODULE_UNKNOWN, which fails a required rule)' % ', '.join(missing))
        if params.get('check_mode'):
            plan.warnings.append(msg + ' [check mode: would fail]')
        elif params['require_modules']:
            raise PlanError(msg)
        else:
            plan.warnings.append(msg)


def _check_jumps_kept(planner, after, origins, alias):
    """No jump of the services' stacks (any type) lands elsewhere than
    before the edit; only a jump to the end of a service's account stack
    now lands on the adopt block."""
    params = planner.params
    services = list(params['services']) + list(params.get('pam_systemd_services') or [])
    for service in services:
        for ptype in ('account', 'auth', 'password', 'session'):
            before = effective_stack(planner.view, service, ptype)
            now = effective_stack(after, service, ptype)

            def key_before(entry):
                return (entry.line.path, entry.line.lineno)

            def key_after(entry):
                return _origin_key(alias, origins, entry.line.path, entry.line.lineno)

            old = _landings(before, key_before)
            new = _landings(now, key_after)
            for (rule, value), land in sorted(old.items(), key=repr):
                got = new.get((rule, value))
                if got is None:
                    continue    # the rule's own "done"/jump was rewritten on purpose
                if got == land:
                    continue
                if ptype == 'account' and service in params['services'] and land == 'END' and \
                        got == _block_key(now, key_after):
                    continue
                raise PlanError('%s:%s (%s stack of %s): the jump of %s would land on %s instead of %s '
                                'after the edit; refusing (nothing was written). Please report this tree: the '
                                'editor should have kept that target' % (rule[0], rule[1], ptype, service, value,
                                                                         _landing_text(got), _landing_text(land)))


def _landing_text(key):
    if key == 'END':
        return 'the end of the stack'
    if key == 'BAD':
        return 'nothing (a jump past the end: the stack fails)'
    if isinstance(key, tuple) and isinstance(key[1], tuple):
        return 'the adopt block in %s' % key[0]
    if isinstance(key, tuple):
        return '%s:%s' % key
    return str(key)


def _block_key(stack, keyof):
    for entry in stack.entries:
        if entry.substack_depth == 0 and entry.line.added_tag in ('adopt', 'admin_access'):
            return keyof(entry)
    return None


def _check_generated(planner):
    params, plan = planner.params, planner.plan
    for path, edit in planner.edits.items():
        if edit.target != path:
            continue      # a vendor file copied to the configuration directory
        if plan.new.get(path) == plan.old.get(path):
            continue      # already so (authselect's custom profile made by role adopt_pam writes our marks)
        content = planner.current.get(path)
        tool = generator_of(planner.source, path, content)
        if not tool:
            continue
        plan.generated.append((path, tool[0]))
        if params.get('generated_files', 'refuse') == 'edit':
            plan.warnings.append(tool[1] + ' [generated_files=edit: edited anyway]')
        else:
            raise PlanError(tool[1] + '; or set generated_files=edit to edit it anyway')


def _check_fail_open_static(planner, after):
    """Kept bypass rules that fail open in a way the probe cannot show:
    pam_listfile onerr=succeed (everyone in when the list is missing)."""
    params, plan = planner.params, planner.plan
    for service in params['services']:
        stack = effective_stack(after, service, 'account')
        result = analyse_account(stack, lambda ln: ln.added_tag == 'adopt')
        for term in result['terminators']:
            line = [e.line for e in stack.entries if e.line.path == term['file'] and e.line.lineno == term['line']][0]
            if line.module_name == 'pam_listfile.so' and 'onerr=succeed' in line.args:
                msg = ('%s:%d "%s" lets everybody in when its list cannot be read (onerr=succeed), before '
                       'pam_slurm_adopt: a missing or unmounted list opens the node to every user. Use onerr=fail'
                       % (term['file'], term['line'], term['text']))
                if params['short_circuits'] == 'warn':
                    plan.warnings.append(msg)
                else:
                    raise PlanError(msg)


def _run_guard(planner, after, facts):
    params, plan = planner.params, planner.plan
    if params.get('lockout_guard', 'libpam') != 'libpam':
        plan.guard = {'mode': 'static'}
        plan.warnings.append('lockout_guard=static: the computed stacks were not run through the real libpam; only '
                             'the access rules themselves were checked')
        return
    changed = plan.changed_paths()
    if not changed:
        plan.guard = {'mode': 'libpam', 'skipped': 'nothing changes'}
        return
    why = evaluator_ready()
    if why:
        raise PlanError('the lockout guard cannot run: %s. Run as root, or set lockout_guard=static to accept '
                        'the result without the real-libpam check' % why)
    before_contents = dict((p, plan.old.get(p)) for p in changed)
    after_contents = dict((p, plan.new.get(p)) for p in changed)
    before_src = planner.source
    try:
        result = lockout_guard(params['root'], before_contents, after_contents, before_src, after,
                               list(params['services']), list(params.get('ensure_access_for') or []), facts,
                               params['pamd_dir'], params['vendor_dir'], released=planner.released)
    except GuardError as exc:
        raise PlanError('the lockout guard could not run the real libpam: %s. Set lockout_guard=static to '
                        'accept the result without it' % exc)
    plan.guard = {'mode': 'libpam', 'checked': ['%s %s' % c for c in result['checked']],
                  'probe': result['probe'], 'problems': result['problems'], 'let_in': result['let_in']}
    plan.warnings.extend(result['notes'])
    if result['problems']:
        raise PlanError('lockout guard (real libpam, %s): %s' % (
            'before and after the edit', '; '.join(result['problems'])))
    if result['let_in']:
        msg = ('the computed stack lets an ordinary user without a job in (real libpam, probe user %s, uid %d, '
               'no admin group; %s) through: %s. %s' % (
                   PROBE_USER, result['probe']['uid'], result['probe']['why'], ', '.join(result['let_in']),
                   _let_in_hint(planner, after, facts, result)))
        if params['short_circuits'] == 'warn':
            plan.warnings.append(msg)
        else:
            raise PlanError(msg)


def _let_in_hint(planner, after, facts, result):
    """Which kept rule lets the probe in (static reading of the kept rules)."""
    uid = result['probe']['uid']
    hints = []
    for term in planner.plan.kept:
        text = term.get('text', '')
        words = text.split()
        module = [w for w in words if w.endswith('.so')]
        mod = module[0].rsplit('/', 1)[-1] if module else ''
        args = words[words.index(module[0]) + 1:] if module else []
        if mod == 'pam_succeed_if.so':
            limit = succeed_if_uid_limit(args)
            if limit is not None and limit > uid:
                hints.append('%s:%d "%s" matches uid %d: ordinary users start at %d here (%s); lower the limit to '
                             '%d or set directory_uid_min if your users start elsewhere'
                             % (term['file'], term['line'], text, uid, uid, result['probe']['why'], uid))
                continue
        if mod == 'pam_usertype.so':
            hints.append('%s:%d "%s" treats uids up to SYS_UID_MAX (%d) as system users, and ordinary users start '
                         'at %d' % (term['file'], term['line'], text, facts.sys_uid_max, uid))
            continue
        if mod in ('pam_access.so', 'pam_listfile.so'):
            hints.append('%s:%d "%s" is kept as an admin bypass: check that its list or rules do not admit every '
                         'user (sense=deny, a missing list with onerr=succeed, no final deny rule)'
                         % (term['file'], term['line'], text))
            continue
        hints.append('%s:%d "%s" ends the stack before pam_slurm_adopt' % (term['file'], term['line'], text))
    if not hints:
        hints.append('check the options of the adopt rule (action_no_jobs, service) and the access rules')
    return 'Fix: ' + '; '.join(hints)


# --------------------------------------------------------------------------
# Admin files


def _plan_admin_files(params, source, plan, manifest):
    files = manifest.get('files', {})
    access = params['access_file']
    listfile = params['listfile_path']
    managed_access = [p for p, m in files.items() if m.get('kind') == 'access']
    managed_list = [p for p, m in files.items() if m.get('kind') == 'listfile']
    if params['admin_access'] == 'pam_access':
        current = _read_host(source, access)
        if current is not None and access not in files and not current.startswith(ACCESS_HEADER.split('\n', 1)[0]):
            raise PlanError('access_file %s exists and was not written by hpc.slurm_adopt; pam_adopt owns that file '
                            'entirely. Choose another path, or remove the file' % access)
        plan.old[access] = current
        plan.new[access] = access_file_content(params['access_rules'])
    if params['admin_access'] == 'pam_listfile':
        plan.old[listfile] = _read_host(source, listfile)
        plan.new[listfile] = ''.join('%s\n' % u for u in params['listfile_users'])
    # files managed before under another mode/path: put them back
    for path in managed_access + managed_list:
        if path in plan.new:
            continue
        plan.old[path] = _read_host(source, path)
        plan.new[path] = _restore_content(source, params['state_dir'], path, files[path], plan)
    # the marked block that versions before 0.2 appended to the shared access.conf
    if SHARED_ACCESS_FILE not in plan.new:
        current = _read_host(source, SHARED_ACCESS_FILE)
        if has_marks(current):
            plan.old[SHARED_ACCESS_FILE] = current
            plan.new[SHARED_ACCESS_FILE] = unmark(current)
            plan.warnings.append('%s: removed the block an earlier version of pam_adopt appended (the admin rules '
                                 'now live in %s)' % (SHARED_ACCESS_FILE, access))


def file_kind(params, path):
    if path == params['access_file'] or path == SHARED_ACCESS_FILE:
        return 'access'
    if path == params['listfile_path']:
        return 'listfile'
    return 'pam'


# --------------------------------------------------------------------------
# Removal


def _original_path(state_dir, path):
    return os.path.join(state_dir, 'originals', path.lstrip('/'))


def _restore_content(source, state_dir, path, meta, plan):
    current = _read_host(source, path)
    if sha256(current) == meta.get('written_sha256'):
        if meta.get('original_absent'):
            return None
        orig = _read_host(source, _original_path(state_dir, path))
        if orig is not None and sha256(orig) == meta.get('original_sha256'):
            plan.restored.append(path)
            return orig
        plan.warnings.append('%s: stored original is missing or corrupt (checksum mismatch); removing our lines '
                             'instead' % path)
    elif current is not None:
        plan.warnings.append('%s changed since it was written by hpc.slurm_adopt; removing only our '
                             'marked lines instead of restoring the original' % path)
    if current is None:
        return None
    if meta.get('kind') == 'listfile':
        return current
    if meta.get('kind') == 'access' and meta.get('original_absent') and current.startswith(ACCESS_HEADER[:40]):
        return None
    return unmark(current)


def plan_absent(params, source=None):
    if source is None:
        source = FileSource(params['root'], params['pamd_dir'], params['vendor_dir'])
    plan = Plan()
    manifest = load_manifest(source, params['state_dir'])
    files = manifest.get('files', {})
    for path, meta in files.items():
        plan.old[path] = _read_host(source, path)
        plan.new[path] = _restore_content(source, params['state_dir'], path, meta, plan)
    # lines left by a run whose state directory was lost
    for service in params['services']:
        if source.service_path(service) is None:
            continue
        for path in reachable_files(source, service) + [SHARED_ACCESS_FILE]:
            if path in plan.new:
                continue
            current = _read_host(source, path)
            if has_marks(current):
                plan.old[path] = current
                plan.new[path] = unmark(current)
                plan.warnings.append('%s has hpc.slurm_adopt marks but no stored original; removed the marks' % path)
    return plan


# --------------------------------------------------------------------------
# Writing


def _host(root, path):
    return resolve_host(root, path)


def atomic_write(host_path, content, template_stat=None, move=os.rename):
    """Write ``content`` to ``host_path`` through a temp file in the same
    directory, fsync, ``move`` it over the target, fsync the directory.
    ``None`` deletes.  The new file gets the mode and owner of
    ``template_stat``, else of the file it replaces, else 0644.  ``move`` is
    os.rename, or AnsibleModule.atomic_move in the module (which also keeps
    the SELinux context of the file it replaces)."""
    directory = os.path.dirname(host_path) or '.'
    if content is None:
        if os.path.lexists(host_path):
            os.unlink(host_path)
            _fsync_dir(directory)
        return
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    data = content.encode('utf-8', 'surrogateescape') if not isinstance(content, bytes) else content
    st = template_stat
    if st is None and os.path.exists(host_path):
        st = os.stat(host_path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(host_path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _set_mode_owner(tmp, st)
        move(tmp, host_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if template_stat is not None:
        # a move that creates the target may apply its own default mode
        _set_mode_owner(host_path, template_stat)
    _fsync_dir(directory)


def _set_mode_owner(path, st):
    if st is None:
        os.chmod(path, 0o644)
        return
    os.chmod(path, st.st_mode & 0o7777)
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(params, plan, state, writer=atomic_write):
    """Write the plan.  ``state`` is 'present' or 'absent'.  Returns the list
    of written paths.  On failure every file already written is put back
    (a file that did not exist is removed again) and the exception
    re-raised."""
    root = params['root']
    state_dir = params['state_dir']
    source = FileSource(root, params['pamd_dir'], params['vendor_dir'])
    manifest = load_manifest(source, state_dir)
    files = manifest.setdefault('files', {})
    changed = plan.changed_paths()
    if not changed and state == 'present':
        return []
    # 1. store originals before touching anything
    if state == 'present':
        for path in changed:
            if path in files and plan.old.get(path) is not None and \
                    sha256(plan.old[path]) == files[path].get('written_sha256'):
                continue
            old = plan.old.get(path)
            if path in files and old is not None:
                original = unmark(old)     # changed behind our back: best original we have
            else:
                original = old if not has_marks(old) else unmark(old)
            meta = {'kind': file_kind(params, path), 'original_absent': original is None,
                    'original_sha256': sha256(original)}
            if original is not None:
                writer(_host(root, _original_path(state_dir, path)), original,
                       template_stat=os.stat(_host(root, path)))
            files[path] = meta
    # 2. write the files, rolling back on failure
    written = []
    try:
        for path in changed:
            writer(_host(root, path), plan.new[path])
            written.append(path)
    except Exception:
        for path in reversed(written):
            try:
                writer(_host(root, path), plan.old.get(path))
            except Exception:  # pylint: disable=broad-except
                pass
        raise
    # 3. record what we wrote
    if state == 'present':
        for path in plan.new:
            if path in files:
                new = plan.new[path]
                if new is not None and new == _stored_original(root, state_dir, path, files[path]):
                    _drop(root, state_dir, path, files)
                    continue
                if new is None and files[path].get('original_absent'):
                    _drop(root, state_dir, path, files)
                    continue
                files[path]['written_sha256'] = sha256(new)
    else:
        for path in list(files):
            _drop(root, state_dir, path, files)
    if files:
        writer(_host(root, os.path.join(state_dir, 'manifest.json')),
               json.dumps(manifest, indent=1, sort_keys=True) + '\n')
    else:
        writer(_host(root, os.path.join(state_dir, 'manifest.json')), None)
    return written


def _stored_original(root, state_dir, path, meta):
    if meta.get('original_absent'):
        return None
    host = _host(root, _original_path(state_dir, path))
    if not os.path.exists(host):
        return False
    with open(host, 'rb') as handle:
        return handle.read().decode('utf-8', 'surrogateescape')


def _drop(root, state_dir, path, files):
    host = _host(root, _original_path(state_dir, path))
    if os.path.exists(host):
        os.unlink(host)
    files.pop(path, None)
