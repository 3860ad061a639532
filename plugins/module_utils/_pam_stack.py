# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Linux-PAM configuration parser, include/substack resolver and stack analysis.

The one PAM parser of this collection.  Standard library only, Python 3.6+,
no Ansible imports: the modules use it, and it is meant to be shipped to
nodes as a plain file.

Written from the behaviour of Linux-PAM 1.5 to 1.7 (libpam's
``_pam_assemble_line``/``pam_line.c``, ``_pam_parse_conf_file``,
``_pam_parse_control`` and ``_pam_dispatch_aux``), read for facts, not
copied, and checked against the real library (tests/unit/pam_eval and
tests/unit/plugins/test_pam_semantics.py run the same cases through real
libpam):

* **Lines.**  A ``#`` anywhere on a physical line ends that line; a physical
  line containing ``#`` never continues onto the next.  A physical line whose
  last non-blank character is a backslash continues on the next one (the
  backslash becomes a space).  A blank or comment-only line *inside* a
  continuation is where the versions differ: 1.5 skips it and keeps joining,
  1.6+ ends the logical line there; such lines are flagged ``ambiguous``.
* **Tokens** are separated by blanks; a token that starts with ``[`` runs to
  the first ``]`` (``\\]`` is a literal ``]``) and may contain blanks.  This
  holds for the control and for module arguments.
* **Types** and the **keywords** ``required requisite sufficient optional
  include substack`` are case-insensitive.  Anything else in the control
  position is parsed as an action list (with or without brackets), and that
  is **case-sensitive**: ``[Success=ok]`` or ``DEFAULT=ignore`` is a parse
  error, and a parse error makes *every* return value ``bad``: the module
  still runs, the rule always fails.  Blanks around ``=`` are allowed.  The
  first ``default=`` only sets the values not set before it; a later
  ``default=`` changes nothing.
* **Broken lines** (unknown type, no control, no module, a missing file in
  ``include``/``substack``) become a rule that always fails
  (``PAM_PERM_DENIED``) at their place in the stack; they count for jumps.
  A line with an unknown type in a service file or an ``@include``-d file
  breaks the *auth* stack (libpam files it there, "most sensitive"); in a
  file read through ``TYPE include``/``substack`` it breaks ``TYPE``.
* **``-type``** only stops libpam from *logging* a module that cannot be
  loaded.  The rule stays, and returns ``PAM_MODULE_UNKNOWN``: a missing
  ``-account required`` module fails the stack; ``-type include missing``
  fails like the plain form.
* **``@include FILE``** (Debian) reads every type of FILE in place, as if
  its lines were in the including file; a missing file aborts every PAM
  call of the service (``PAM_ABORT``).  **``TYPE include FILE``** splices
  FILE's ``TYPE`` rules in place: ``done``/``die`` there end the whole stack
  and jumps count them one by one and may land in the including file.
  **``TYPE substack FILE``** adds one rule (counted once by jumps) under
  which FILE's rules run one level deeper: ``done``/``die`` end only the
  substack, a jump past the substack's end fails the stack ("bad jump"), and
  the substack shares the parent's result (a failure in it fails the stack
  like a ``required`` rule).
* Files are looked up in ``/etc/pam.d``, then the vendor directory
  (``/usr/lib/pam.d``); a service without a file uses ``other``.

Everything works on file contents below an optional root, so the same code
runs on a node (modules), on image trees and in unit tests.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

PAM_TYPES = ('account', 'auth', 'password', 'session')

# Return values in libpam's order (index = PAM return code); "default" is
# the catch-all name of an action list.
RETURN_VALUES = (
    'success', 'open_err', 'symbol_err', 'service_err', 'system_err',
    'buf_err', 'perm_denied', 'auth_err', 'cred_insufficient',
    'authinfo_unavail', 'user_unknown', 'maxtries', 'new_authtok_reqd',
    'acct_expired', 'session_err', 'cred_unavail', 'cred_expired',
    'cred_err', 'no_module_data', 'conv_err', 'authtok_err',
    'authtok_recover_err', 'authtok_lock_busy', 'authtok_disable_aging',
    'try_again', 'ignore', 'abort', 'authtok_expired', 'module_unknown',
    'bad_item', 'conv_again', 'incomplete')
ACTIONS = ('ignore', 'ok', 'done', 'bad', 'die', 'reset')
KEYWORDS = ('required', 'requisite', 'sufficient', 'optional')
PAM_RC_NAMES = tuple('PAM_' + v.upper() for v in RETURN_VALUES)


def keyword_table(keyword):
    """The full action table of a control keyword (pam.conf(5))."""
    keyword = keyword.lower()
    if keyword in ('required', 'requisite'):
        table = dict((v, 'bad' if keyword == 'required' else 'die') for v in RETURN_VALUES)
        table.update(success='ok', new_authtok_reqd='ok', ignore='ignore')
    elif keyword == 'optional':
        table = dict((v, 'ignore') for v in RETURN_VALUES)
        table.update(success='ok', new_authtok_reqd='ok')
    elif keyword == 'sufficient':
        table = dict((v, 'ignore') for v in RETURN_VALUES)
        table.update(success='done', new_authtok_reqd='done')
    else:
        raise ValueError('not a control keyword: %r' % keyword)
    return table


# Kept for callers that show the keyword tables.
KEYWORD_ACTIONS = dict((k, keyword_table(k)) for k in KEYWORDS)


def parse_control(text):
    """Parse an action list as libpam does (case-sensitive, names matched
    as prefixes, blanks allowed around '=').  Returns (table, error): the
    full table value->action (action: one of ACTIONS or a jump count), and
    on a parse error a message and a table where every value is 'bad'."""
    table = dict((v, None) for v in RETURN_VALUES)
    names = RETURN_VALUES + ('default',)
    i, n = 0, len(text)

    def fail(msg):
        return dict((v, 'bad') for v in RETURN_VALUES), '%s at %r' % (msg, text[i:] or text)

    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        ret = None
        for name in names:
            if text.startswith(name, i):
                ret = name
                break
        if ret is None or i + len(ret) >= n:
            return fail('expecting return value')
        i += len(ret)
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != '=':
            return fail("expecting '='")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return fail('expecting action')
        act = None
        for name in ACTIONS:
            if text.startswith(name, i):
                act = name
                i += len(name)
                break
        if act is None:
            j = i
            while j < n and text[j].isdigit():
                j += 1
            if j == i:
                return fail('expecting jump number')
            act = int(text[i:j])
            i = j
            if act == 0:
                return fail('expecting non-zero')
        if ret == 'default':
            for value in RETURN_VALUES:
                if table[value] is None:
                    table[value] = act
        else:
            table[ret] = act
    for value in RETURN_VALUES:
        if table[value] is None:
            table[value] = 'bad'
    return table, None


def render_control(table):
    """The shortest bracketed control for a full action table."""
    counts = {}
    for value in RETURN_VALUES:
        counts[table[value]] = counts.get(table[value], 0) + 1
    default = max(counts, key=lambda act: (counts[act], str(act)))
    words = ['%s=%s' % (v, table[v]) for v in RETURN_VALUES if table[v] != default]
    return '[%s]' % ' '.join(words + ['default=%s' % default])


# Tags this collection writes.  Added rules end with "# hpc.slurm_adopt:<tag>";
# lines it disables are prefixed with "#hpc.slurm_adopt:<reason># ".
MARK = 'hpc.slurm_adopt'
ADDED_TAG_RE = re.compile(r'[ \t]*# ' + re.escape(MARK) + r':([a-z_]+)(\+eofnl)?[ \t]*$')
DISABLED_RE = re.compile(r'^#' + re.escape(MARK) + r':([a-z_]+)# ')
BLOCK_BEGIN = '# BEGIN ' + MARK
BLOCK_END = '# END ' + MARK

MAX_INCLUDE_DEPTH = 16  # Linux-PAM's PAM_SUBSTACK_MAX_LEVEL


def strtok(text):
    """libpam's tokenizer: [(value, bracketed)] of a logical line."""
    out = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in ' \t\n':
            i += 1
        if i >= n:
            return out
        if text[i] == '[':
            j = i + 1
            buf = []
            while j < n and text[j] != ']':
                if text[j] == '\\' and j + 1 < n and text[j + 1] == ']':
                    j += 1
                buf.append(text[j])
                j += 1
            out.append((''.join(buf), True))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in ' \t\n':
                j += 1
            out.append((text[i:j], False))
            i = j


class PamLine(object):
    """One logical line of a PAM file (possibly several physical lines)."""

    def __init__(self, path, lineno, physical):
        self.path = path
        self.lineno = lineno                  # 1-based number of the first physical line
        self.physical = physical              # list of physical lines, with their newlines
        self.kind = 'blank'                   # blank|comment|rule|atinclude|invalid
        self.text = ''                        # assembled text that Linux-PAM sees
        self.type = None                      # lower-case type; None when unknown
        self.dash = False
        self.control = None                   # control as written ('required', '[...]')
        self.actions = None                   # full table value->action (None for include/substack)
        self.control_error = None             # action list that libpam cannot parse (all values bad)
        self.keyword = None                   # required|requisite|sufficient|optional|include|substack|None
        self.module = None
        self.args = []
        self.error = None                     # why an invalid line always fails
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
            'module': self.module, 'args': list(self.args), 'text': self.text.strip(' \t\n'),
            'managed': self.added_tag, 'error': self.error or self.control_error,
        }


def _physical_text(content):
    """(text before any '#', ends_with_backslash, has_hash, is_empty) of one
    physical line without its newline."""
    if '#' in content:
        before = content[:content.index('#')]
        return before, False, True, not before.strip(' \t')
    stripped = content.rstrip(' \t\r\n')
    if stripped.endswith('\\'):
        return stripped[:-1] + ' ', True, False, False
    return content, False, False, not stripped.strip(' \t')


def _parse_logical(line):
    tokens = strtok(line.text)
    if not tokens:
        return
    first, _bracketed = tokens[0]
    if first.lower() == '@include':
        line.kind = 'atinclude'
        if len(tokens) < 2:
            line.kind = 'invalid'
            line.error = '@include without a file name'
            return
        line.module = tokens[1][0]
        return
    line.kind = 'rule'
    ptype = first
    if ptype.startswith('-'):
        line.dash = True
        ptype = ptype[1:]
    if ptype.lower() not in PAM_TYPES:
        line.kind = 'invalid'
        line.error = 'unknown module type %r' % first
        return
    line.type = ptype.lower()
    if len(tokens) < 2:
        line.kind = 'invalid'
        line.error = 'no control flag'
        return
    control, bracketed = tokens[1]
    line.control = '[%s]' % control if bracketed else control
    word = control.lower()
    if word in KEYWORDS:
        line.keyword = word
        line.actions = keyword_table(word)
    elif word in ('include', 'substack'):
        line.keyword = word
    else:
        line.actions, line.control_error = parse_control(control)
        if line.control_error:
            line.control_error = 'control %s cannot be parsed (%s): every result counts as a failure' % (
                line.control, line.control_error)
    if len(tokens) < 3:
        line.kind = 'invalid'
        line.error = 'no %s' % ('file name' if line.keyword in ('include', 'substack') else 'module path')
        return
    line.module = tokens[2][0]
    line.args = [t[0] for t in tokens[3:]]


class PamFile(object):
    """A parsed PAM file that keeps every byte so it can be rewritten exactly."""

    def __init__(self, path, content):
        self.path = path
        self.content = content
        self.lines = []
        self._parse()

    def _parse(self):
        current = None
        pieces = []
        for idx, phys in enumerate(self.content.splitlines(True)):
            body = phys.rstrip('\n')
            text, continues, has_hash, empty = _physical_text(body)
            if current is not None and empty:
                # blank or comment-only line inside a continuation: 1.5 skips
                # it and keeps joining, 1.6+ ends the logical line here
                current.ambiguous = True
            if current is None:
                current = PamLine(self.path, idx + 1, [])
                pieces = []
            current.physical.append(phys)
            pieces.append(text)
            if continues:
                continue
            self._finish(current, pieces)
            current = None
        if current is not None:
            self._finish(current, pieces)

    def _finish(self, line, pieces):
        line.text = ''.join(pieces)
        m = DISABLED_RE.match(line.physical[0])
        if m:
            line.disabled_tag = m.group(1)
        if line.text.strip(' \t\n'):
            _parse_logical(line)
        elif '#' in line.raw:
            line.kind = 'comment'
        else:
            line.kind = 'blank'
        if line.kind in ('rule', 'atinclude', 'invalid'):
            tm = ADDED_TAG_RE.search(line.physical[-1].rstrip('\n'))
            if tm:
                line.added_tag = tm.group(1)
        self.lines.append(line)

    def rules(self):
        return [ln for ln in self.lines if ln.kind in ('rule', 'atinclude')]

    def invalid(self):
        """Lines libpam turns into an always-failing rule."""
        return [ln for ln in self.lines if ln.kind == 'invalid' or ln.control_error]


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
    ``overrides`` maps absolute (un-rooted) paths to contents (None: the
    file does not exist) and is used to validate edited files before they
    are written."""

    def __init__(self, root='/', pamd_dir='/etc/pam.d', vendor_dir='/usr/lib/pam.d', overrides=None):
        self.root = root or '/'
        self.pamd_dir = pamd_dir
        self.vendor_dir = vendor_dir
        self.overrides = dict(overrides or {})
        self._cache = {}

    def with_overrides(self, overrides):
        return FileSource(self.root, self.pamd_dir, self.vendor_dir, overrides)

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

    def exists(self, path):
        if path in self.overrides:
            return self.overrides[path] is not None
        return os.path.isfile(self.host_path(path))

    def locate(self, name):
        """Return the PAM path used for ``name`` or None."""
        for cand in self.candidates(name):
            if self.exists(cand):
                return cand
        return None

    def read(self, path):
        if path in self.overrides and self.overrides[path] is not None:
            return self.overrides[path]
        with open(self.host_path(path), 'rb') as handle:
            return handle.read().decode('utf-8', 'surrogateescape')

    def load(self, path):
        if path not in self._cache:
            self._cache[path] = PamFile(path, self.read(path))
        return self._cache[path]

    def service_path(self, service):
        return self.locate(service) or self.locate('other')

    def list_services(self):
        """Names of every file in the configuration and vendor directories."""
        names = set()
        for directory in (self.pamd_dir, self.vendor_dir):
            if not directory:
                continue
            host = rooted(self.root, directory)
            if os.path.isdir(host):
                for name in os.listdir(host):
                    if not name.startswith('.') and os.path.isfile(resolve_host(self.root, os.path.join(directory,
                                                                                                        name))):
                        names.add(name)
        for path in self.overrides:
            if os.path.dirname(path) in (self.pamd_dir, self.vendor_dir):
                if self.overrides[path] is None:
                    if not os.path.isfile(self.host_path(path)):
                        names.discard(os.path.basename(path))
                else:
                    names.add(os.path.basename(path))
        return sorted(names)


class Entry(object):
    """One handler of an effective stack, with where it came from.

    kind: ``rule`` (a module), ``substack`` (the handler a substack line
    adds: not run, counted once by jumps, its members follow one level
    deeper) or ``must_fail`` (a broken line or missing include: always
    PAM_PERM_DENIED)."""

    def __init__(self, line, chain, substack_depth, kind='rule', reason=None):
        self.line = line
        self.chain = chain                  # tuple of include/substack lines leading here
        self.substack_depth = substack_depth
        self.kind = kind
        self.reason = reason

    @property
    def actions(self):
        if self.kind == 'must_fail':
            return dict((v, 'bad') for v in RETURN_VALUES)
        return self.line.actions

    def key(self):
        return (self.line.path, self.line.lineno, self.kind)

    def to_dict(self):
        out = self.line.to_dict()
        out['include_chain'] = [
            {'file': c.path, 'line': c.lineno,
             'via': 'substack' if c.keyword == 'substack' else ('@include' if c.kind == 'atinclude' else 'include')}
            for c in self.chain]
        out['substack_depth'] = self.substack_depth
        out['entry'] = self.kind
        if self.reason:
            out['error'] = self.reason
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
        self.errors = []         # what makes libpam fail this stack (unless jumped over)
        self.aborts = False      # libpam aborts every call (missing @include)
        self.ambiguous = []      # lines libpam 1.5 and 1.6+ read differently

    def top_level(self):
        """Indices of entries at the top level (a substack handler is there,
        its members are not)."""
        return [i for i, e in enumerate(self.entries) if e.substack_depth == 0]

    def next_after(self, idx, count):
        """Index of the entry libpam runs next after entry ``idx`` jumps
        ``count`` rules (len(entries) = end of the stack), or None for a
        "bad jump" (past the end of the substack or stack: the stack fails).
        Landing on a substack handler means running its first member."""
        level = self.entries[idx].substack_depth
        j = idx
        while count > 0:
            nxt = j + 1
            if nxt >= len(self.entries) or self.entries[nxt].substack_depth < level:
                return None
            j = nxt
            while j + 1 < len(self.entries) and self.entries[j + 1].substack_depth > level:
                j += 1
            count -= 1
        return self.normalise(j + 1)

    def normalise(self, idx):
        while idx < len(self.entries) and self.entries[idx].kind == 'substack' and \
                idx + 1 < len(self.entries) and \
                self.entries[idx + 1].substack_depth > self.entries[idx].substack_depth:
            idx += 1
        return idx

    def end_of_level(self, idx):
        """Index just after the unit (rule, or substack handler + members)
        that starts at ``idx``."""
        level = self.entries[idx].substack_depth
        j = idx
        while j + 1 < len(self.entries) and self.entries[j + 1].substack_depth > level:
            j += 1
        return j + 1


def effective_stack(source, service, ptype):
    path = source.service_path(service)
    stack = Stack(service, ptype, path)
    if path is None:
        stack.errors.append('no PAM file for service %r and no "other"' % service)
        stack.aborts = True
        return stack
    _expand(source, path, ptype, stack, (), 0, (), None)
    return stack


def _note_file(stack, path):
    if path not in stack.files:
        stack.files.append(path)


def _expand(source, path, ptype, stack, chain, depth, visiting, read_type):
    """Append ``path``'s handlers of type ``ptype``.  ``read_type`` is None
    for a file libpam reads for every type (the service file, @include)."""
    _note_file(stack, path)
    if len(chain) > MAX_INCLUDE_DEPTH or path in visiting or depth >= MAX_INCLUDE_DEPTH:
        stack.errors.append('include loop or includes nested too deep at %s' % path)
        if chain:
            stack.entries.append(Entry(chain[-1], chain[:-1], depth, 'must_fail', 'include loop or too deep'))
        return
    pfile = source.load(path)
    visiting = visiting + (path,)
    for line in pfile.lines:
        if line.ambiguous and line.type in (None, ptype) and line not in stack.ambiguous:
            stack.ambiguous.append(line)
        if line.kind == 'atinclude':
            target = source.locate(line.module)
            if target is None:
                stack.missing.append((line.module, path, line.lineno))
                stack.errors.append('%s:%d: @include %s: no such file; libpam aborts every call of the service'
                                    % (path, line.lineno, line.module))
                stack.aborts = True
                continue
            _expand(source, target, ptype, stack, chain + (line,), depth, visiting, read_type)
            continue
        if line.kind == 'invalid':
            ltype = line.type
            if ltype is None:
                ltype = read_type or 'auth'
            if ltype == ptype:
                stack.entries.append(Entry(line, chain, depth, 'must_fail', line.error))
                stack.errors.append('%s:%d: %s: the rule always fails' % (path, line.lineno, line.error))
            continue
        if line.kind != 'rule' or line.type != ptype:
            continue
        if line.keyword in ('include', 'substack'):
            if line.keyword == 'substack':
                stack.entries.append(Entry(line, chain, depth, 'substack'))
            target = source.locate(line.module)
            if target is None:
                stack.missing.append((line.module, path, line.lineno))
                stack.entries.append(Entry(line, chain, depth, 'must_fail', 'included file %r not found'
                                           % line.module))
                stack.errors.append('%s:%d: %s %s: no such file; the rule always fails'
                                    % (path, line.lineno, line.keyword, line.module))
                continue
            _expand(source, target, ptype, stack, chain + (line,),
                    depth + (1 if line.keyword == 'substack' else 0), visiting, ptype)
            continue
        stack.entries.append(Entry(line, chain, depth))
        if line.control_error:
            stack.errors.append('%s:%d: %s' % (path, line.lineno, line.control_error))


def reachable_files(source, service):
    """Every file reachable from the service for any type, in order."""
    seen = []
    for ptype in PAM_TYPES:
        for f in effective_stack(source, service, ptype).files:
            if f not in seen:
                seen.append(f)
    return seen


# --------------------------------------------------------------------------
# Analysis


def _action_for(actions, value):
    return actions.get(value, actions.get('default', 'bad'))


def is_adopt_rule(line, script_hint='pam_slurm_adopt'):
    """A rule that runs some pam_slurm_adopt (C module, or ours via
    pam_python/pam_exec, or the adoption service's pam_slurm_adopt_client.so)."""
    if line.kind != 'rule' or line.module is None or line.keyword in ('include', 'substack'):
        return False
    if script_hint in line.module_name:
        return True
    return any(script_hint in a for a in line.args)


SUCCEED_IF_FLAGS = ('quiet', 'quiet_success', 'quiet_fail', 'audit', 'debug', 'use_uid')


def succeed_if_uid_limit(args):
    """For pam_succeed_if whose only condition is 'uid < N' / 'uid <= N' /
    'uid lt|le N': the smallest uid it does NOT match (N or N+1); else None."""
    conds = [a for a in args if a not in SUCCEED_IF_FLAGS]
    if len(conds) != 3 or conds[0] != 'uid':
        return None
    try:
        limit = int(conds[2])
    except ValueError:
        return None
    if conds[1] in ('<', 'lt'):
        return limit
    if conds[1] in ('<=', 'le'):
        return limit + 1
    return None


def _succeed_if_named_users(args):
    """pam_succeed_if whose only condition names users or a group
    ('user ingroup wheel', 'user = root', 'user in a:b')."""
    conds = [a for a in args if a not in SUCCEED_IF_FLAGS]
    return len(conds) == 3 and conds[0] == 'user' and conds[1] in ('ingroup', '=', 'eq', 'in')


def _values_with(actions, wanted):
    vals = [v for v in RETURN_VALUES if actions[v] == wanted]
    if len(vals) > 8:
        return ['default']
    return vals


def ending_reasons(stack, idx, limit=None):
    """Why entry ``idx`` can end the stack (or jump to ``limit`` or beyond):
    a list of "value=action" strings, empty when it cannot."""
    entry = stack.entries[idx]
    if entry.kind != 'rule':
        return []
    acts = entry.actions
    reasons = ['%s=done' % v for v in _values_with(acts, 'done')]
    for value in RETURN_VALUES:
        act = acts[value]
        if isinstance(act, int):
            target = stack.next_after(idx, act)
            if target is None:
                reasons.append('%s=%d jumps past the end (the stack fails)' % (value, act))
            elif limit is not None and target > limit:
                reasons.append('%s=%d jumps over the adopt rule' % (value, act))
            elif target >= len(stack.entries):
                reasons.append('%s=%d jumps to the end of the stack' % (value, act))
    return reasons


def classify_terminator(line, adopt_idx=None, idx=None, top=None, stack=None):
    """Why ``line`` can end the account stack with success before adopt.

    Returns None when it cannot, else a tuple (classification, reason):

    short_circuit       ends the stack successfully for ordinary users
                        (pam_localuser, pam_permit, [success=done] pam_sss)
    system_users        pam_succeed_if uid < N / pam_usertype issystem:
                        meant for system accounts (checked for fail-open)
    admin_bypass        pam_listfile/pam_access/pam_succeed_if-user rules
                        meant to let administrators in (checked for fail-open)
    jump_past_adopt     a jump that lands beyond the adopt rule
    expired_password    only new_authtok_reqd=done (pam_unix on Debian)
    """
    if line.kind != 'rule' or line.actions is None:
        return None
    if stack is not None and idx is not None:
        reasons = ending_reasons(stack, idx, adopt_idx)
    else:
        reasons = ['%s=done' % v for v in _values_with(line.actions, 'done')]
    if not reasons:
        return None
    jump_out = any('jumps over' in r or 'past the end' in r for r in reasons)
    if reasons == ['new_authtok_reqd=done']:
        return ('expired_password', 'new_authtok_reqd=done')
    reason = ', '.join(reasons) if not line.keyword else '%s (%s)' % (line.keyword, ', '.join(reasons))
    if jump_out:
        return ('jump_past_adopt', reason)
    name = line.module_name or ''
    if name == 'pam_succeed_if.so' and succeed_if_uid_limit(line.args) is not None:
        return ('system_users', reason)
    if name == 'pam_usertype.so' and 'issystem' in line.args:
        return ('system_users', reason)
    if line.added_tag == 'admin_access' or name in ('pam_listfile.so', 'pam_access.so'):
        return ('admin_bypass', reason)
    if name == 'pam_succeed_if.so' and _succeed_if_named_users(line.args):
        return ('admin_bypass', reason)
    return ('short_circuit', reason)


def analyse_account(stack, adopt_predicate=None):
    """Find the adopt rule and every top-level rule that may end the stack
    before it.

    Returns dict(adopt_index, adopt_last, after_adopt, terminators)."""
    if adopt_predicate is None:
        adopt_predicate = is_adopt_rule
    top = stack.top_level()
    adopt_idx = None
    for i in top:
        if stack.entries[i].kind == 'rule' and adopt_predicate(stack.entries[i].line):
            adopt_idx = i
    terminators = []
    limit = adopt_idx if adopt_idx is not None else len(stack.entries)
    for i in top:
        if i >= limit:
            break
        if stack.entries[i].kind != 'rule':
            continue
        found = classify_terminator(stack.entries[i].line, adopt_idx, i, top, stack)
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
