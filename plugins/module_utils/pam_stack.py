# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux-PAM configuration parser, include/substack resolver and stack analysis.

Written from the behaviour of Linux-PAM (libpam/pam_line.c, pam_handlers.c,
pam_dispatch.c), not from its code:

* A configuration file is read line by line.  A ``#`` anywhere on a
  physical line starts a comment that runs to the end of *that physical
  line*; a physical line that contains ``#`` never continues onto the next
  one, even if it ends with a backslash.
* A physical line whose last non-blank character (blanks: space, tab) is a
  backslash continues on the next physical line; the backslash becomes a
  space.  A blank line ends a continued line (Linux-PAM >= 1.6; 1.5 skipped
  blank lines inside a continuation - such files are reported as
  ``ambiguous`` by this parser).
* A logical line is ``[-]type control module-path [args...]``; ``type`` is
  case-insensitive; ``control`` is a keyword or a ``[value=action ...]``
  list; arguments may be ``[...]`` groups containing blanks (``\\]`` escapes
  a closing bracket).  Debian's ``@include FILE`` splices every type of
  FILE.  ``include`` splices the lines of that type; ``substack`` runs them
  as a sub-stack whose ``done``/``die``/jumps end only the sub-stack.
* An unparsable line (unknown type, missing module) makes Linux-PAM fail the
  whole stack for that type (PAM_HT_MUST_FAIL): the editor refuses to write
  any file that gains such a line.

Everything here is pure Python (3.6+) and works on file contents, so it can
be used on a node (from the modules) and in unit tests on fixture trees.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

PAM_TYPES = ('account', 'auth', 'password', 'session')

# Return values that may appear on the left-hand side of an action list.
RETURN_VALUES = (
    'success', 'open_err', 'symbol_err', 'service_err', 'system_err',
    'buf_err', 'perm_denied', 'auth_err', 'cred_insufficient',
    'authinfo_unavail', 'user_unknown', 'maxtries', 'new_authtok_reqd',
    'acct_expired', 'session_err', 'cred_unavail', 'cred_expired',
    'cred_err', 'no_module_data', 'conv_err', 'authtok_err',
    'authtok_recover_err', 'authtok_lock_busy', 'authtok_disable_aging',
    'try_again', 'ignore', 'abort', 'authtok_expired', 'module_unknown',
    'bad_item', 'conv_again', 'incomplete', 'default')
ACTIONS = ('ignore', 'ok', 'done', 'bad', 'die', 'reset')

# The four classic keywords as action lists (pam.conf(5)).
KEYWORD_ACTIONS = {
    'required': {'success': 'ok', 'new_authtok_reqd': 'ok', 'ignore': 'ignore', 'default': 'bad'},
    'requisite': {'success': 'ok', 'new_authtok_reqd': 'ok', 'ignore': 'ignore', 'default': 'die'},
    'sufficient': {'success': 'done', 'new_authtok_reqd': 'done', 'default': 'ignore'},
    'optional': {'success': 'ok', 'new_authtok_reqd': 'ok', 'default': 'ignore'},
}

# Tags this collection writes.  Added rules end with "# hpc.slurm_adopt:<tag>";
# lines it disables are prefixed with "#hpc.slurm_adopt:<reason># ".
MARK = 'hpc.slurm_adopt'
ADDED_TAG_RE = re.compile(r'[ \t]*# ' + re.escape(MARK) + r':([a-z_]+)(\+eofnl)?[ \t]*$')
DISABLED_RE = re.compile(r'^#' + re.escape(MARK) + r':([a-z_]+)# ')
BLOCK_BEGIN = '# BEGIN ' + MARK
BLOCK_END = '# END ' + MARK

MAX_INCLUDE_DEPTH = 16  # Linux-PAM's PAM_SUBSTACK_MAX_LEVEL


class PamLine(object):
    """One logical line of a PAM file (possibly several physical lines)."""

    def __init__(self, path, lineno, physical):
        self.path = path
        self.lineno = lineno                  # 1-based number of the first physical line
        self.physical = physical              # list of physical lines, with their newlines
        self.kind = 'blank'                   # blank|comment|rule|atinclude|invalid
        self.text = ''                        # assembled text that Linux-PAM sees
        self.type = None
        self.dash = False
        self.control = None                   # control as written ('required', '[...]')
        self.actions = None                   # dict value->action (None for include/substack)
        self.keyword = None                   # required|requisite|sufficient|optional|include|substack|None
        self.module = None
        self.args = []
        self.error = None
        self.added_tag = None                 # tag of a rule this collection added
        self.disabled_tag = None              # reason if this collection disabled the line
        self.ambiguous = False

    @property
    def end_lineno(self):
        return self.lineno + len(self.physical) - 1

    @property
    def raw(self):
        return ''.join(self.physical)

    @property
    def module_name(self):
        """Base name of the module without directory ('pam_unix.so')."""
        if self.module is None:
            return None
        return self.module.rsplit('/', 1)[-1]

    def to_dict(self):
        return {
            'file': self.path, 'line': self.lineno, 'kind': self.kind,
            'type': self.type, 'dash': self.dash, 'control': self.control,
            'module': self.module, 'args': list(self.args), 'text': self.text,
            'managed': self.added_tag, 'error': self.error,
        }


def _unescape_continuation(content):
    """Return (text, continues) for one physical line without its newline.

    Mirrors pam_line.c: a line containing '#' never continues; otherwise a
    trailing backslash (blanks after it allowed) continues it and becomes a
    space."""
    if '#' in content:
        return content[:content.index('#')], False
    stripped = content.rstrip(' \t\r\n')
    if stripped.endswith('\\'):
        return stripped[:-1] + ' ', True
    return content, False


def _split_args(text):
    """Split module arguments; '[...]' groups keep blanks, '\\]' is a literal ']'."""
    args = []
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in ' \t\n':
            i += 1
        if i >= n:
            break
        if text[i] == '[':
            j = i + 1
            buf = []
            while j < n and text[j] != ']':
                if text[j] == '\\' and j + 1 < n and text[j + 1] == ']':
                    buf.append(']')
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            args.append(''.join(buf))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in ' \t\n':
                j += 1
            args.append(text[i:j])
            i = j
    return args


def parse_actions(inner):
    """Parse the inside of a bracketed control.  Returns (dict, error)."""
    actions = {}
    for token in inner.split():
        if '=' not in token:
            return actions, 'action %r has no "="' % token
        value, action = token.split('=', 1)
        value = value.lower()
        action = action.lower()
        if value not in RETURN_VALUES:
            return actions, 'unknown return value %r' % value
        if action not in ACTIONS:
            try:
                if int(action) <= 0:
                    raise ValueError(action)
            except ValueError:
                return actions, 'unknown action %r' % action
            action = int(action)
        actions[value] = action
    return actions, None


def _parse_logical(line):
    text = line.text.strip(' \t\n')
    if not text:
        return
    tokens = text.split(None, 1)
    first = tokens[0]
    rest = tokens[1] if len(tokens) > 1 else ''
    if first == '@include':
        line.kind = 'atinclude'
        names = rest.split()
        if not names:
            line.kind = 'invalid'
            line.error = '@include without a file name'
            return
        line.module = names[0]
        return
    line.kind = 'rule'
    ptype = first
    if ptype.startswith('-'):
        line.dash = True
        ptype = ptype[1:]
    line.type = ptype.lower()
    if line.type not in PAM_TYPES:
        line.kind = 'invalid'
        line.error = 'unknown module type %r' % first
        return
    rest = rest.lstrip(' \t')
    if not rest:
        line.kind = 'invalid'
        line.error = 'no control flag'
        return
    if rest.startswith('['):
        end = rest.find(']')
        if end < 0:
            line.kind = 'invalid'
            line.error = 'unterminated [ in control'
            return
        line.control = rest[:end + 1]
        actions, err = parse_actions(rest[1:end])
        if err:
            line.kind = 'invalid'
            line.error = err
            return
        line.actions = actions
        rest = rest[end + 1:]
    else:
        parts = rest.split(None, 1)
        line.control = parts[0]
        rest = parts[1] if len(parts) > 1 else ''
        keyword = parts[0].lower()
        if keyword in KEYWORD_ACTIONS:
            line.keyword = keyword
            line.actions = dict(KEYWORD_ACTIONS[keyword])
        elif keyword in ('include', 'substack'):
            line.keyword = keyword
        else:
            line.kind = 'invalid'
            line.error = 'unknown control %r' % parts[0]
            return
    args = _split_args(rest)
    if not args:
        line.kind = 'invalid'
        line.error = 'no module path'
        return
    line.module = args[0]
    line.args = args[1:]


class PamFile(object):
    """A parsed PAM file that keeps every byte so it can be rewritten exactly."""

    def __init__(self, path, content):
        self.path = path
        self.content = content
        self.lines = []
        self._parse()

    def _parse(self):
        physical = self.content.splitlines(True)
        current = None
        pieces = []
        lineno = 0
        for idx, phys in enumerate(physical):
            lineno = idx + 1
            body = phys.rstrip('\n')
            text, continues = _unescape_continuation(body)
            if current is None:
                current = PamLine(self.path, lineno, [])
                pieces = []
            current.physical.append(phys)
            pieces.append(text)
            if continues:
                continue
            if len(current.physical) > 1 and not text.strip(' \t'):
                # blank line terminating a continuation: 1.5 and 1.6+ disagree
                current.ambiguous = True
            self._finish(current, pieces)
            current = None
        if current is not None:
            self._finish(current, pieces)

    def _finish(self, line, pieces):
        line.text = ''.join(pieces)
        raw = line.raw
        first = line.physical[0]
        m = DISABLED_RE.match(first)
        if m:
            line.disabled_tag = m.group(1)
        if line.text.strip(' \t\n'):
            _parse_logical(line)
        elif '#' in raw:
            line.kind = 'comment'
        else:
            line.kind = 'blank'
        if line.kind in ('rule', 'atinclude'):
            last = line.physical[-1].rstrip('\n')
            tm = ADDED_TAG_RE.search(last)
            if tm:
                line.added_tag = tm.group(1)
        self.lines.append(line)

    def rules(self):
        return [ln for ln in self.lines if ln.kind in ('rule', 'atinclude')]

    def invalid(self):
        return [ln for ln in self.lines if ln.kind == 'invalid']


def parse(content, path='<string>'):
    return PamFile(path, content)


def rooted(root, path):
    """``path`` (absolute, as seen on the node) below ``root``."""
    if root in (None, '', '/'):
        return path
    return os.path.join(root, path.lstrip('/'))


def resolve_host(root, path, hops=20):
    """Host path of ``path`` below ``root``, following symlinks of the last
    component the way they resolve inside ``root`` (RHEL's
    /etc/pam.d/system-auth -> /etc/authselect/system-auth)."""
    host = rooted(root, path)
    for _count in range(hops):
        if not os.path.islink(host):
            return host
        target = os.readlink(host)
        if target.startswith('/'):
            host = rooted(root, target)
        else:
            host = os.path.normpath(os.path.join(os.path.dirname(host), target))
    return host


class FileSource(object):
    """Finds PAM files the way Linux-PAM does: /etc/pam.d/NAME, then the
    vendor directory (/usr/lib/pam.d), optionally under a different root.
    ``overrides`` maps absolute (un-rooted) paths to contents and is used to
    validate edited files before they are written."""

    def __init__(self, root='/', pamd_dir='/etc/pam.d', vendor_dir='/usr/lib/pam.d', overrides=None):
        self.root = root or '/'
        self.pamd_dir = pamd_dir
        self.vendor_dir = vendor_dir
        self.overrides = dict(overrides or {})
        self._cache = {}

    def host_path(self, path):
        """The path of PAM path ``path`` on this machine (below root, symlinks
        resolved inside root)."""
        return resolve_host(self.root, path)

    def candidates(self, name):
        if name.startswith('/'):
            return [name]
        out = [os.path.join(self.pamd_dir, name)]
        if self.vendor_dir:
            out.append(os.path.join(self.vendor_dir, name))
        return out

    def locate(self, name):
        """Return the PAM path used for ``name`` or None."""
        for cand in self.candidates(name):
            if cand in self.overrides or os.path.isfile(self.host_path(cand)):
                return cand
        return None

    def read(self, path):
        if path in self.overrides:
            return self.overrides[path]
        with open(self.host_path(path), 'rb') as handle:
            return handle.read().decode('utf-8', 'surrogateescape')

    def load(self, path):
        if path not in self._cache:
            self._cache[path] = PamFile(path, self.read(path))
        return self._cache[path]

    def service_path(self, service):
        return self.locate(service) or self.locate('other')


class Entry(object):
    """One rule in an effective stack, with where it came from."""

    def __init__(self, line, chain, substack_depth):
        self.line = line
        self.chain = chain                  # tuple of include/substack lines leading here
        self.substack_depth = substack_depth

    def to_dict(self):
        out = self.line.to_dict()
        out['include_chain'] = [
            {'file': c.path, 'line': c.lineno,
             'via': 'substack' if c.keyword == 'substack' else ('@include' if c.kind == 'atinclude' else 'include')}
            for c in self.chain]
        out['substack_depth'] = self.substack_depth
        return out


class Stack(object):
    """The effective stack of one service and one type."""

    def __init__(self, service, ptype, path):
        self.service = service
        self.type = ptype
        self.path = path
        self.entries = []
        self.files = []          # reachable files in visiting order
        self.missing = []        # (name, referring file, line)
        self.errors = []

    def top_level(self):
        """Indices of entries evaluated at the top level (substacks count as
        their include line would; members of substacks are excluded)."""
        return [i for i, e in enumerate(self.entries) if e.substack_depth == 0]


def effective_stack(source, service, ptype):
    path = source.service_path(service)
    stack = Stack(service, ptype, path)
    if path is None:
        stack.errors.append('no PAM file for service %r and no "other"' % service)
        return stack
    _expand(source, path, ptype, stack, (), 0, set())
    return stack


def _note_file(stack, path):
    if path not in stack.files:
        stack.files.append(path)


def _expand(source, path, ptype, stack, chain, depth, visiting):
    _note_file(stack, path)
    if len(chain) > MAX_INCLUDE_DEPTH or path in visiting:
        stack.errors.append('include loop or too deep at %s' % path)
        return
    pfile = source.load(path)
    visiting = visiting | set([path])
    for line in pfile.lines:
        if line.kind == 'invalid':
            if line.type in (None, ptype):
                stack.errors.append('%s:%d: %s' % (path, line.lineno, line.error))
            continue
        is_include = line.kind == 'rule' and line.type == ptype and line.keyword in ('include', 'substack')
        if line.kind == 'atinclude' or is_include:
            target = source.locate(line.module)
            if target is None:
                stack.missing.append((line.module, path, line.lineno))
                if not line.dash:
                    stack.errors.append('%s:%d: included file %r not found' % (path, line.lineno, line.module))
                continue
            sub_depth = depth
            if line.keyword == 'substack':
                # the substack counts as one rule of the parent stack (for jumps)
                stack.entries.append(Entry(line, chain, depth))
                sub_depth = depth + 1
            _expand(source, target, ptype, stack, chain + (line,), sub_depth, visiting)
            continue
        if line.kind == 'rule' and line.type == ptype:
            stack.entries.append(Entry(line, chain, depth))


def reachable_files(source, service):
    """Every file reachable from the service for any type, in order."""
    seen = []
    path = source.service_path(service)
    if path is None:
        return seen
    for ptype in PAM_TYPES:
        stack = Stack(service, ptype, path)
        _expand(source, path, ptype, stack, (), 0, set())
        for f in stack.files:
            if f not in seen:
                seen.append(f)
    return seen


# --------------------------------------------------------------------------
# Analysis


def _action_for(actions, value):
    if value in actions:
        return actions[value]
    return actions.get('default', 'bad')


def is_adopt_rule(line, script_hint='pam_slurm_adopt'):
    """A rule that runs some pam_slurm_adopt (C module, or ours via
    pam_python/pam_exec)."""
    if line.kind != 'rule' or line.module is None:
        return False
    if script_hint in line.module_name:
        return True
    return any(script_hint in a for a in line.args)


def _succeed_if_system_only(args, max_uid=1000):
    """pam_succeed_if whose only condition is 'uid < N'/'uid <= N' with N
    at most ``max_uid``: it can only succeed for system accounts."""
    flags = set(['quiet', 'quiet_success', 'quiet_fail', 'audit', 'debug', 'use_uid'])
    conds = [a for a in args if a not in flags]
    if len(conds) != 3 or conds[0] != 'uid':
        return False
    op, num = conds[1], conds[2]
    try:
        limit = int(num)
    except ValueError:
        return False
    if op in ('<', 'lt'):
        return limit <= max_uid
    if op in ('<=', 'le'):
        return limit < max_uid
    if op in ('=', 'eq'):
        return limit < max_uid
    return False


def _succeed_if_named_users(args):
    """pam_succeed_if whose only condition names users or a group
    ('user ingroup wheel', 'user = root', 'user in a:b')."""
    flags = set(['quiet', 'quiet_success', 'quiet_fail', 'audit', 'debug', 'use_uid'])
    conds = [a for a in args if a not in flags]
    return len(conds) == 3 and conds[0] == 'user' and conds[1] in ('ingroup', '=', 'eq', 'in')


def classify_terminator(line, adopt_idx=None, idx=None, top=None):
    """Why ``line`` can end the account stack with success before adopt.

    Returns None when it cannot, else a tuple (classification, reason):

    short_circuit       ends the stack successfully for ordinary users:
                        must be disabled (pam_localuser, pam_permit, ...)
    system_users        pam_succeed_if uid<N (N<=1000) / pam_usertype
                        issystem: only system accounts and root, which
                        pam_slurm_adopt ignores anyway; kept (they keep root
                        able to log in when e.g. sssd is down)
    admin_bypass        pam_listfile/pam_access/pam_succeed_if-group rules
                        meant to let administrators in; kept
    jump_past_adopt     a jump that lands beyond the adopt rule: ends the
                        stack with the earlier modules' result (success
                        for a valid user).  Never disabled automatically -
                        commenting out a jumping rule usually sends
                        everybody into the pam_deny it jumped over
    expired_password    only new_authtok_reqd=done (pam_unix on Debian):
                        ends the stack for a user whose password has
                        expired; kept, reported (sshd then forces a password
                        change)
    """
    if line.kind != 'rule' or line.actions is None:
        return None
    acts = line.actions
    succ = _action_for(acts, 'success')
    ign = _action_for(acts, 'ignore')
    nar = _action_for(acts, 'new_authtok_reqd')
    reasons = []
    jump_out = False
    if top is not None and idx is not None and adopt_idx is not None:
        for value in ('success', 'ignore', 'new_authtok_reqd', 'default'):
            act = acts.get(value)
            if isinstance(act, int):
                pos = top.index(idx)
                target = pos + act + 1
                apos = top.index(adopt_idx) if adopt_idx in top else len(top)
                if target > apos:
                    jump_out = True
                    reasons.append('%s=%d jumps over the adopt rule' % (value, act))
    if succ == 'done':
        reasons.append('success=done')
    if ign == 'done':
        reasons.append('ignore=done')
    if not reasons and nar == 'done':
        return ('expired_password', 'new_authtok_reqd=done')
    if not reasons:
        return None
    reason = ', '.join(reasons) if not line.keyword else '%s (%s)' % (line.keyword, ', '.join(reasons))
    if jump_out:
        return ('jump_past_adopt', reason)
    name = line.module_name or ''
    if name == 'pam_succeed_if.so' and _succeed_if_system_only(line.args):
        return ('system_users', reason)
    if name == 'pam_usertype.so' and 'issystem' in line.args:
        return ('system_users', reason)
    if line.added_tag == 'admin_access' or name in ('pam_listfile.so', 'pam_access.so'):
        return ('admin_bypass', reason)
    if name == 'pam_succeed_if.so' and _succeed_if_named_users(line.args):
        return ('admin_bypass', reason)
    return ('short_circuit', reason)


def analyse_account(stack, adopt_predicate=None):
    """Find the adopt rule and every rule that may end the stack before it.

    Returns dict(adopt_index, adopt_last, after_adopt, terminators)."""
    if adopt_predicate is None:
        adopt_predicate = is_adopt_rule
    top = stack.top_level()
    adopt_idx = None
    for i in top:
        if adopt_predicate(stack.entries[i].line):
            adopt_idx = i
    terminators = []
    limit = adopt_idx if adopt_idx is not None else len(stack.entries)
    for i in top:
        if i >= limit:
            break
        found = classify_terminator(stack.entries[i].line, adopt_idx, i, top)
        if found:
            cls, reason = found
            item = stack.entries[i].to_dict()
            item['classification'] = cls
            item['reason'] = reason
            terminators.append(item)
    after = []
    if adopt_idx is not None:
        after = [stack.entries[i] for i in top if i > adopt_idx]
    return {
        'adopt_index': adopt_idx,
        'adopt_last': adopt_idx is not None and not after,
        'after_adopt': after,
        'terminators': terminators,
    }


def find_module_lines(source, files, module_name):
    """Active rules (any type) using module ``module_name`` in ``files``."""
    out = []
    for path in files:
        for line in source.load(path).lines:
            if line.kind == 'rule' and line.module_name == module_name:
                out.append(line)
    return out


def disabled_lines(source, files):
    out = []
    for path in files:
        for line in source.load(path).lines:
            if line.disabled_tag:
                out.append(line)
    return out
