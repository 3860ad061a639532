# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning, validating and writing the pam_slurm_adopt PAM edits.

Nothing here writes until :func:`commit` is called with a complete plan:
every file is computed first, the result is re-parsed and validated, and
only then written (temp file + fsync + rename per file, rollback of the
files already written if a later write fails).  Originals are kept under a
state directory so that ``state=absent`` can restore them byte for byte.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import tempfile

from ansible_collections.hpc.slurm_adopt.plugins.module_utils.pam_stack import (
    MARK, ADDED_TAG_RE, DISABLED_RE, BLOCK_BEGIN, BLOCK_END,
    FileSource, PamFile, resolve_host, effective_stack, analyse_account, reachable_files,
    is_adopt_rule,
)

ADOPT_OPTION_NAMES = (
    'action_no_jobs', 'action_unknown', 'action_adopt_failure',
    'action_generic_failure', 'disable_x11', 'log_level', 'nodename',
    'service', 'join_container', 'single_job_skip_rpc', 'ignore_root')

DEFAULT_MODULE_DIRS = (
    '/lib/security', '/lib64/security', '/usr/lib/security', '/usr/lib64/security',
    '/lib/*-linux-gnu*/security', '/usr/lib/*-linux-gnu*/security')


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
    lines it added, re-enable the lines it disabled, drop its marked block."""
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


def _disable_line(line, reason):
    return ''.join('#%s:%s# %s' % (MARK, reason, phys) for phys in line.physical)


def render_rule(ptype, control, module, args, tag, dash=False):
    words = [('-' if dash else '') + ptype, control, module] + list(args)
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
    return 'pam_exec.so', args + [python, script, 'pam-exec'] + options


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
        acc_args = []
        if params['access_file'] != '/etc/security/access.conf':
            _check_word('access_file', params['access_file'])
            acc_args.append('accessfile=%s' % params['access_file'])
        lines.append((render_rule('account', 'required', 'pam_access.so', acc_args, 'admin_access'),
                      'pam_access.so', False))
    return lines


# --------------------------------------------------------------------------
# Admin access files


def access_block(rules):
    for rule in rules:
        parts = rule.split(':')
        if len(parts) < 3 or parts[0].strip() not in ('+', '-'):
            raise PlanError('access rule %r is not "+|-:users:origins"' % rule)
    body = ''.join('%s\n' % r for r in rules)
    return '%s admin access for pam_slurm_adopt (managed by Ansible)\n%s%s\n' % (BLOCK_BEGIN, body, BLOCK_END)


def with_access_block(current, rules):
    base = unmark(current) if current is not None else ''
    if base and not base.endswith('\n'):
        # the block needs its own lines; the stored original (manifest) keeps
        # the file's missing final newline for state=absent
        base += '\n'
    return base + access_block(rules)


def _user_groups(user):
    import grp
    import pwd
    groups = set()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    try:
        groups.add(grp.getgrgid(pw.pw_gid).gr_name)
    except KeyError:
        pass
    for group in grp.getgrall():
        if user in group.gr_mem:
            groups.add(group.gr_name)
    return groups


def access_allows(rules, user, groups):
    """First-match evaluation of pam_access rules for ``user`` from any
    origin (only rules whose origin list contains ALL are trusted to match
    every connection)."""
    for rule in rules:
        perm, users, origins = [p.strip() for p in rule.split(':', 2)]
        words = users.split()
        if 'EXCEPT' in words:
            return None  # too clever to evaluate here
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


def check_lockout(params, group_lookup=_user_groups):
    """Raise PlanError if a user in ``ensure_access_for`` would be denied
    without a job by the requested admin access."""
    problems = []
    for user in params.get('ensure_access_for') or []:
        mode = params['admin_access']
        if mode == 'pam_listfile':
            if user not in (params.get('listfile_users') or []):
                problems.append('%s is not in listfile_users' % user)
        elif mode == 'pam_access':
            groups = group_lookup(user) or set()
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
# Editing one PAM file


def _rebuild(pfile, disable=None, insert_after=None, insert_text=''):
    """Text of ``pfile`` with lines disabled (dict id(line)->reason) and
    ``insert_text`` inserted after physical line ``insert_after`` (0 = top,
    None = no insertion)."""
    disable = disable or {}
    out = []
    pending = insert_after is not None
    if insert_after == 0:
        out.append(insert_text)
        pending = False
    for line in pfile.lines:
        out.append(_disable_line(line, disable[id(line)]) if id(line) in disable else line.raw)
        if pending and line.end_lineno >= insert_after:
            out.append(_insertion(out, insert_text))
            pending = False
    if pending:
        out.append(_insertion(out, insert_text))
    return ''.join(out)


def _insertion(out, text):
    """``text`` to append after ``out``; when the file lacks its final
    newline, add it and tag our last line so removal can take it away."""
    if out and not out[-1].endswith('\n'):
        out[-1] += '\n'
        return _tag_last_eof(text)
    return text


def _tag_last_eof(text):
    lines = text.splitlines(True)
    for idx in range(len(lines) - 1, -1, -1):
        if ADDED_TAG_RE.search(lines[idx].rstrip('\n')):
            lines[idx] = lines[idx].rstrip('\n') + '+eofnl\n'
            break
    return ''.join(lines)


def _account_anchor(source, service_path, stack):
    """Last physical line of the service file that contributes account rules."""
    last = 0
    for entry in stack.entries:
        line = entry.chain[0] if entry.chain else entry.line
        if line.path == service_path:
            last = max(last, line.end_lineno)
    if last == 0:
        pfile = source.load(service_path)
        last = pfile.lines[-1].end_lineno if pfile.lines else 0
    return last


# --------------------------------------------------------------------------
# The plan


class Plan(object):
    def __init__(self):
        self.new = {}          # path -> new content (None = delete)
        self.old = {}          # path -> current content (None = absent)
        self.disabled = []     # dicts
        self.kept = []         # terminators kept, with classification
        self.added = []        # dicts (file, line text)
        self.warnings = []
        self.restored = []

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


def plan_present(params, source=None):
    """Compute every file; raise PlanError if the result would be unsafe."""
    if source is None:
        source = FileSource(params['root'], params['pamd_dir'], params['vendor_dir'])
    plan = Plan()
    lines = desired_lines(params)
    if params['admin_access'] == 'pam_access':
        access_block(params['access_rules'])      # validates the rules
    check_lockout(params)
    manifest = load_manifest(source, params['state_dir'])

    # Work on the files as they were before this collection touched them.
    work = {}
    before_invalid = {}

    def base(path):
        if path not in work:
            current = _read_host(source, path)
            plan.old[path] = current
            work[path] = unmark(current) if current is not None else None
            if work[path] is not None:
                before_invalid[path] = len(PamFile(path, work[path]).invalid())
        return work[path]

    for path in manifest.get('files', {}):
        if manifest['files'][path].get('kind', 'pam') == 'pam':
            base(path)
    for service in params['services']:
        for path in reachable_files(FileSource(source.root, source.pamd_dir, source.vendor_dir), service):
            base(path)

    def view():
        return FileSource(source.root, source.pamd_dir, source.vendor_dir,
                          overrides=dict((p, c) for p, c in work.items() if c is not None))

    for service in params['services']:
        src = view()
        svc_path = src.service_path(service)
        if svc_path is None:
            raise PlanError('service %s: no PAM file (and no "other")' % service)
        if os.path.basename(svc_path) == 'other' and service != 'other':
            raise PlanError('service %s has no file of its own; refusing to edit "other"' % service)
        stack = effective_stack(src, service, 'account')
        if stack.errors:
            raise PlanError('service %s: the current account stack is broken: %s' % (service, '; '.join(stack.errors)))
        # 1. rules running some other pam_slurm_adopt: disable
        disable = {}
        for entry in stack.entries:
            if is_adopt_rule(entry.line) and not entry.line.added_tag:
                if not params['replace_other_adopt_rules']:
                    raise PlanError('%s:%d already runs pam_slurm_adopt (%s); set replace_other_adopt_rules'
                                    % (entry.line.path, entry.line.lineno, entry.line.text.strip()))
                disable.setdefault(entry.line.path, {})[id(entry.line)] = 'other_adopt'
                plan.disabled.append(dict(entry.to_dict(), service=service, classification='other_adopt',
                                          reason='another pam_slurm_adopt rule'))
        _apply_disables(src, work, disable)
        # 2. insert our lines after the last account line of the service file
        src = view()
        stack = effective_stack(src, service, 'account')
        anchor = _account_anchor(src, svc_path, stack)
        text = ''.join(t + '\n' for t, _m, _d in lines)
        work[svc_path] = _rebuild(src.load(svc_path), insert_after=anchor, insert_text=text)
        plan.added.extend({'file': svc_path, 'text': t, 'service': service} for t, _m, _d in lines)
        # 3. rules that can end the account stack before adopt
        src = view()
        stack = effective_stack(src, service, 'account')
        result = analyse_account(stack, lambda ln: ln.added_tag == 'adopt')
        disable = {}
        for term in result['terminators']:
            if term['classification'] == 'jump_past_adopt' and params['short_circuits'] != 'warn':
                raise PlanError('%s:%d jumps over the pam_slurm_adopt rule (%s): %s. Disabling a jumping rule '
                                'would change where every other user lands, so this is not fixed automatically; '
                                'fix that file (or set short_circuits=warn to accept it)'
                                % (term['file'], term['line'], term['reason'], term['text'].strip()))
            if term['classification'] == 'jump_past_adopt':
                plan.warnings.append('%s:%d jumps over the pam_slurm_adopt rule (%s)'
                                     % (term['file'], term['line'], term['reason']))
                plan.kept.append(dict(term, service=service))
                continue
            if term['classification'] != 'short_circuit':
                plan.kept.append(dict(term, service=service))
                continue
            if params['short_circuits'] == 'fail':
                raise PlanError('%s:%d can end the account stack before pam_slurm_adopt: %s'
                                % (term['file'], term['line'], term['text'].strip()))
            if params['short_circuits'] == 'warn':
                plan.warnings.append('%s:%d can end the account stack before pam_slurm_adopt (%s): %s'
                                     % (term['file'], term['line'], term['reason'], term['text'].strip()))
                plan.kept.append(dict(term, service=service))
                continue
            line = _line_at(src, term['file'], term['line'])
            disable.setdefault(term['file'], {})[id(line)] = 'short_circuit'
            plan.disabled.append(dict(term, service=service))
        _apply_disables(src, work, disable)
    # 4. pam_systemd, every type, every file reachable from the services
    #    (and from pam_systemd_services, e.g. system-auth on RHEL)
    if params['pam_systemd'] == 'disable':
        for service in list(params['services']) + list(params.get('pam_systemd_services') or []):
            src = view()
            if src.locate(service) is None:
                raise PlanError('pam_systemd_services: no PAM file %r' % service)
            for path in reachable_files(src, service):
                base(path)
            src = view()
            disable = {}
            for path in reachable_files(src, service):
                for line in src.load(path).lines:
                    if line.kind == 'rule' and line.module_name == 'pam_systemd.so':
                        disable.setdefault(path, {})[id(line)] = 'pam_systemd'
                        plan.disabled.append(dict(line.to_dict(), service=service, classification='pam_systemd',
                                                  reason='pam_systemd moves the session out of the job cgroup'))
            _apply_disables(src, work, disable)

    _validate(params, view(), work, before_invalid, lines, plan)

    for path, content in work.items():
        plan.new[path] = content
        if content != plan.old.get(path) and plan.old.get(path):
            _warn_generated(path, plan.old[path], plan)
    _plan_admin_files(params, source, plan, manifest)
    return plan


def _warn_generated(path, old, plan):
    if old.startswith('# Generated by authselect'):
        plan.warnings.append('%s is generated by authselect: this edit is lost at the next "authselect select" or '
                             '"apply-changes"; use a custom authselect profile (role adopt_pam does)' % path)
    elif '# end of pam-auth-update config' in old:
        plan.warnings.append('%s is managed by pam-auth-update: with this local edit pam-auth-update stops updating '
                             'it, and "pam-auth-update --force" undoes it; role adopt_pam uses a pam-auth-update '
                             'profile instead' % path)


def _line_at(src, path, lineno):
    for line in src.load(path).lines:
        if line.lineno == lineno:
            return line
    raise PlanError('internal error: no line %d in %s' % (lineno, path))


def _apply_disables(src, work, disable):
    for path, ids in disable.items():
        work[path] = _rebuild(src.load(path), disable=ids)


def _validate(params, src, work, before_invalid, lines, plan):
    """Re-parse the computed files and refuse anything unsafe."""
    for path, content in work.items():
        if content is None:
            continue
        pfile = PamFile(path, content)
        if len(pfile.invalid()) > before_invalid.get(path, 0):
            raise PlanError('internal error: the edit would make %s unparsable: %s'
                            % (path, '; '.join(ln.error for ln in pfile.invalid())))
        if unmark(content) != unmark(plan.old.get(path) or '') and plan.old.get(path) is not None:
            raise PlanError('internal error: edit of %s is not reversible' % path)
    for service in params['services']:
        stack = effective_stack(src, service, 'account')
        if stack.errors:
            raise PlanError('service %s: computed account stack is broken: %s' % (service, '; '.join(stack.errors)))
        result = analyse_account(stack, lambda ln: ln.added_tag == 'adopt')
        if result['adopt_index'] is None:
            raise PlanError('service %s: the adopt rule is not in the computed account stack' % service)
        after = [e.line for e in result['after_adopt']]
        if any(ln.added_tag != 'admin_access' for ln in after):
            raise PlanError('service %s: the adopt rule would not be last in the account stack (followed by %s)'
                            % (service, ', '.join('%s:%d' % (ln.path, ln.lineno) for ln in after)))
        if params['short_circuits'] == 'disable':
            left = [t for t in result['terminators'] if t['classification'] in ('short_circuit', 'jump_past_adopt')]
            if left:
                raise PlanError('service %s: rules still end the stack before adopt: %s'
                                % (service, ', '.join('%s:%d' % (t['file'], t['line']) for t in left)))
    missing = []
    for _text, module, dash in lines:
        if not dash and not module_exists(params['root'], module, params['module_dirs']):
            missing.append(module)
    if params['interface'] == 'pam_exec' and not module_exists(params['root'], params['python'], None):
        missing.append(params['python'])
    if not module_exists(params['root'], params['script'], None):
        missing.append(params['script'])
    if missing:
        msg = ('refusing to write PAM rules whose module/program is missing on the node: %s '
               '(install it first, e.g. with role hpc.slurm_adopt.adopt_module)' % ', '.join(missing))
        if params.get('check_mode'):
            plan.warnings.append(msg + ' [check mode: would fail]')
        elif params['require_modules']:
            raise PlanError(msg)
        else:
            plan.warnings.append(msg)


def _plan_admin_files(params, source, plan, manifest):
    files = manifest.get('files', {})
    access = params['access_file']
    listfile = params['listfile_path']
    managed_access = [p for p, m in files.items() if m.get('kind') == 'access']
    managed_list = [p for p, m in files.items() if m.get('kind') == 'listfile']
    if params['admin_access'] == 'pam_access':
        current = _read_host(source, access)
        plan.old[access] = current
        plan.new[access] = with_access_block(current, params['access_rules'])
    if params['admin_access'] == 'pam_listfile':
        for user in params['listfile_users']:
            _check_word('listfile user', user)
        plan.old[listfile] = _read_host(source, listfile)
        plan.new[listfile] = ''.join('%s\n' % u for u in params['listfile_users'])
    # files managed before under another mode/path: put them back
    for path in managed_access + managed_list:
        if path in plan.new:
            continue
        plan.old[path] = _read_host(source, path)
        plan.new[path] = _restore_content(source, params['state_dir'], path, files[path], plan)


def file_kind(params, path):
    if path == params['access_file']:
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
        plan.warnings.append('%s: stored original is missing or corrupt; removing our lines instead' % path)
    elif current is not None:
        plan.warnings.append('%s changed since it was written by hpc.slurm_adopt; removing only our '
                             'marked lines instead of restoring the original' % path)
    if current is None:
        return None
    if meta.get('kind') == 'listfile':
        return current
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
        for path in reachable_files(source, service) + [params['access_file']]:
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


def atomic_write(host_path, content, template_stat=None):
    """Write ``content`` to ``host_path`` through a temp file in the same
    directory, fsync, rename, fsync the directory.  ``None`` deletes."""
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
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o7777)
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass
        else:
            os.chmod(tmp, 0o644)
        os.rename(tmp, host_path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


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
    and the exception re-raised."""
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
                if file_kind(params, path) == 'pam' and new == _stored_original(root, state_dir, path, files[path]):
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
