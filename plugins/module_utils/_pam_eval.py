# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run PAM transactions through the real Linux-PAM library, in a private
mount namespace, against a PAM tree of your choice, without changing the
system.

Standard library only, Python 3.6+, no Ansible imports: this file is also
copied to nodes (and into image roots) and run as a plain script.

Contract
========

``evaluate(queries, tree=None, root=None, probe_users=(), module_overlay=None,
binds=None, timeout=10.0, protect=True, python=None)`` returns a dict::

    {'results': [result, ...],      # one per query, same order
     'warnings': [str, ...],        # mounts that could not be made read-only, ...
     'libpam': '/usr/lib/x86_64-linux-gnu/libpam.so.0.85.1',   # the library used
     'python': '3.11.2',            # the interpreter that ran the transactions
     'elapsed': 1.23}

A **query** is a dict:

``service``, ``user``
    required; ``pam_start(service, user, ...)``.
``op`` or ``ops``
    one of, or a list of, ``auth`` (pam_authenticate), ``account``
    (pam_acct_mgmt), ``setcred`` (pam_setcred ESTABLISH_CRED),
    ``open_session`` (pam_open_session; pam_close_session follows at the
    end of the transaction when it succeeded), ``chauthtok``.  The ops run in
    order in one PAM handle and stop at the first one that does not return
    PAM_SUCCESS (``all_ops: true`` runs every op).  Default ``account``.
``password``
    answer to every PAM_PROMPT_ECHO_OFF prompt (no password: the
    conversation returns PAM_CONV_ERR for it); PAM_PROMPT_ECHO_ON prompts
    get ``echo_on`` (default: the user name).
``rhost``, ``tty``, ``ruser``
    set with pam_set_item when given.
``pam_env``
    dict put into the PAM environment (pam_putenv) before the ops.
``flags``
    int ORed into every call (e.g. PAM_SILENT).
``fail_delay``
    true keeps libpam's delay after a failed authentication (default: an
    empty PAM_FAIL_DELAY function, as applications may set; same answers,
    no 2 s sleep per failure).
``timeout``
    seconds for this query (default: ``evaluate``'s ``timeout``).
``labels``
    anything JSON-serialisable; passed through untouched (the comparison
    helper keys results on it).

A **result** is a dict: ``query`` (the query), ``status`` (``ok``,
``timeout`` or ``error``), ``rc`` (int of the last op run, None on
timeout/error), ``rc_name`` (``PAM_SUCCESS``, ``PAM_PERM_DENIED``, ...,
``timeout`` or ``error``), ``steps`` (``[{'op', 'rc', 'rc_name'}]``, including
``start`` when pam_start fails and ``close_session``), ``messages``
(``[{'style': 'PAM_ERROR_MSG'|'PAM_TEXT_INFO'|'PAM_PROMPT_ECHO_OFF'|...,
'text'}]``), ``env`` (pam_getenvlist after the ops), ``elapsed`` (seconds),
``trace`` (lines written by stand-in modules, below) and ``error`` (text,
for status ``error``).

Every query runs in its own forked child process with a deadline: a hung
module gives that query ``status: timeout`` and the child (and its process
group) is killed; the other queries still run.

What the namespace looks like
=============================

The evaluation runs in a child process that unshares its mount namespace
(``unshare(CLONE_NEWNS)`` through ctypes, equivalent of ``unshare --mount
--propagation private``).  Inside it, and nowhere else:

* ``protect`` (default): every mount is remounted read-only (per-mount flag
  of the namespace's copy; the system's mounts stay as they are), and
  ``/var/log``, ``/home`` and ``/var/tmp`` get a tmpfs-backed overlay (or a
  plain tmpfs where overlayfs is unavailable) so that modules that write
  (pam_lastlog, pam_mkhomedir, pam_faillock tallies under /var/run/faillock
  when it exists) work and their writes vanish; the nscd socket and the
  D-Bus system socket are hidden (no cached NSS answers from outside the
  namespace; pam_systemd/pam_elogind cannot create a real logind session).
* ``tree``: a directory laid out like a root file system.  Each of
  ``TREE_PATHS`` present in it is bind-mounted (read-only) over the real
  path: ``/etc/pam.d``, ``/usr/lib/pam.d``, ``/etc/security``,
  ``/etc/passwd``, ``/etc/group``, ``/etc/shadow``, ``/etc/gshadow``,
  ``/etc/nsswitch.conf``, ``/etc/login.defs``, ``/etc/environment``,
  ``/var/lib/extrausers``, ``/etc/authselect`` (RHEL's pam.d files are
  symlinks into it).  A path the system lacks is created in the namespace
  (overlay over its parent).  When a tree is given without
  ``usr/lib/pam.d``, the real vendor directory is hidden (empty tmpfs) so
  that only the tree's files are seen.
* ``probe_users``: users that exist only in the namespace.  Each is a dict
  ``name`` (required), ``uid``, ``gid`` (default: uid), ``groups`` (extra
  group names; created if missing), ``home``, ``shell``, ``password``
  (plain text; hashed with libcrypt, SHA-512), ``source``: ``files``
  (default: lines appended to copies of /etc/passwd, /etc/group,
  /etc/shadow) or ``extrausers`` (lines in /var/lib/extrausers/*, and
  ``extrausers`` appended to the passwd/group/shadow lines of a copy of
  nsswitch.conf; needs Debian's libnss-extrausers): users that resolve
  through NSS but are not in /etc/passwd, as directory users are.  A probe
  user that already exists (``root``) keeps its line; only its password
  (when given) and its extra groups change.
* ``module_overlay``: ``{'pam_sss.so': '/path/to/file.so', 'pam_x.so': None}``.
  Every PAM module directory (``MODULE_DIR_GLOBS`` that exist) is covered by
  a tmpfs holding symlinks to every real module, except that the named
  modules are replaced by copies of the given files, or removed (None).
* ``binds``: ``{'/path/in/namespace': '/host/path'}``, more bind mounts
  (read-only), made last.
* ``root``: a directory holding an OS tree (e.g. a debootstrap image).  The
  namespace chroots into it (with /dev and /proc mounted): the image's own
  libpam, modules, NSS and python3 (``python``; default: the first of
  ``ROOT_PYTHONS`` in the image) are used, and every path above is a path
  inside the image.

Stand-in modules (tests) find a writable directory in ``$PAM_EVAL_DIR`` (set
for every transaction): they read their answers from ``answers`` there and
append one line per call to ``trace``: ``MODULE FUNCTION USER RC TAG``;
the evaluator returns the lines of each query as dicts with those keys
(``rc`` an int; extra words in ``extra``).  ``files`` of ``evaluate`` puts
files into that directory (``{'answers': 'text'}``).

Comparison
==========

``compare(before, after, allowed=None, key=result_key, field='rc_name',
hung_tag='hung')`` pairs results by ``key`` and returns readable violation
strings: a result present on one side only; ``field`` differing where
``allowed(before_result, after_result)`` is not true; a result whose trace
touches a module tagged ``hung_tag`` after but not before.

``expectation_failures(results, allow=(), deny=())``: readable lines for
users in ``allow`` not answered PAM_SUCCESS and users in ``deny`` answered
PAM_SUCCESS or not answered (a lockout guard).  ``allowed_by(rules)``: a
predicate for ``compare`` from rules ``{'service', 'user', 'op', 'to':
'deny'|'allow'|'any'}`` (missing keys match anything).

Example::

    from _pam_eval import evaluate, compare
    q = [{'service': 'sshd', 'user': 'root', 'op': 'account', 'rhost': '10.0.0.1'}]
    before = evaluate(q, tree='/tmp/before')['results']
    after = evaluate(q, tree='/tmp/after')['results']
    problems = compare(before, after)      # [] when every answer is the same

Command line (what the evaluator runs itself): ``python3 _pam_eval.py ns
SPEC`` (set up the namespace, then exec the runner) and ``python3
_pam_eval.py run SPEC`` (inside the namespace: mounts, then the queries).
``python3 _pam_eval.py eval SPEC_JSON`` runs ``evaluate(**spec)`` and prints
the JSON result.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import ctypes.util
import errno
import glob
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# --------------------------------------------------------------------------
# Linux-PAM constants (security/_pam_types.h)

PAM_RC_NAMES = (
    'PAM_SUCCESS', 'PAM_OPEN_ERR', 'PAM_SYMBOL_ERR', 'PAM_SERVICE_ERR', 'PAM_SYSTEM_ERR',
    'PAM_BUF_ERR', 'PAM_PERM_DENIED', 'PAM_AUTH_ERR', 'PAM_CRED_INSUFFICIENT',
    'PAM_AUTHINFO_UNAVAIL', 'PAM_USER_UNKNOWN', 'PAM_MAXTRIES', 'PAM_NEW_AUTHTOK_REQD',
    'PAM_ACCT_EXPIRED', 'PAM_SESSION_ERR', 'PAM_CRED_UNAVAIL', 'PAM_CRED_EXPIRED',
    'PAM_CRED_ERR', 'PAM_NO_MODULE_DATA', 'PAM_CONV_ERR', 'PAM_AUTHTOK_ERR',
    'PAM_AUTHTOK_RECOVERY_ERR', 'PAM_AUTHTOK_LOCK_BUSY', 'PAM_AUTHTOK_DISABLE_AGING',
    'PAM_TRY_AGAIN', 'PAM_IGNORE', 'PAM_ABORT', 'PAM_AUTHTOK_EXPIRED', 'PAM_MODULE_UNKNOWN',
    'PAM_BAD_ITEM', 'PAM_CONV_AGAIN', 'PAM_INCOMPLETE')
PAM_RC = dict((name, i) for i, name in enumerate(PAM_RC_NAMES))

PAM_SERVICE, PAM_USER, PAM_TTY, PAM_RHOST, PAM_CONV = 1, 2, 3, 4, 5
PAM_RUSER = 8
PAM_FAIL_DELAY = 10
PAM_SILENT = 0x8000
PAM_ESTABLISH_CRED = 0x2
PAM_DELETE_CRED = 0x4
MSG_STYLES = {1: 'PAM_PROMPT_ECHO_OFF', 2: 'PAM_PROMPT_ECHO_ON', 3: 'PAM_ERROR_MSG', 4: 'PAM_TEXT_INFO'}
OPS = ('auth', 'account', 'setcred', 'open_session', 'chauthtok')

# --------------------------------------------------------------------------
# Paths

TREE_PATHS = (
    '/etc/pam.d', '/usr/lib/pam.d', '/etc/security', '/etc/passwd', '/etc/group',
    '/etc/shadow', '/etc/gshadow', '/etc/nsswitch.conf', '/etc/login.defs',
    '/etc/environment', '/var/lib/extrausers', '/etc/authselect')
VENDOR_DIR = '/usr/lib/pam.d'
MODULE_DIR_GLOBS = (
    '/lib/security', '/lib64/security', '/usr/lib/security', '/usr/lib64/security',
    '/lib/*-linux-gnu*/security', '/usr/lib/*-linux-gnu*/security')
SCRATCH_DIRS = ('/var/log', '/home', '/var/tmp', '/run/faillock')
HIDDEN_SOCKETS = ('/run/nscd/socket', '/var/run/nscd/socket', '/run/dbus/system_bus_socket',
                  '/var/run/dbus/system_bus_socket')
ROOT_PYTHONS = ('/usr/bin/python3', '/usr/libexec/platform-python', '/usr/bin/python')
EXTRAUSERS_DIR = '/var/lib/extrausers'
SYSLOG_SOCKET = '/dev/log'

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
CLONE_NEWNS = 0x00020000
_OPT_FLAGS = {'nosuid': MS_NOSUID, 'nodev': MS_NODEV, 'noexec': MS_NOEXEC, 'noatime': MS_NOATIME,
              'nodiratime': MS_NODIRATIME, 'relatime': MS_RELATIME}


class EvalError(Exception):
    """The evaluation could not be set up (nothing was run)."""


def rc_name(rc):
    if isinstance(rc, int) and 0 <= rc < len(PAM_RC_NAMES):
        return PAM_RC_NAMES[rc]
    return 'PAM_RC_%s' % rc


# --------------------------------------------------------------------------
# Public API: evaluate


def _own_source():
    """This file's source, also when it was imported from a zip (AnsiballZ)."""
    loader = globals().get('__loader__')
    if loader is not None and hasattr(loader, 'get_source'):
        try:
            src = loader.get_source(__name__)
            if src:
                return src
        except Exception:  # pylint: disable=broad-except
            pass
    with open(__file__.replace('.pyc', '.py')) as handle:
        return handle.read()


def _crypt(password):
    salt = '$6$' + ''.join(random.SystemRandom().choice(
        'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./') for _i in range(16))
    name = ctypes.util.find_library('crypt') or 'libcrypt.so.1'
    lib = ctypes.CDLL(name)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    out = lib.crypt(password.encode('utf-8'), salt.encode('ascii'))
    if not out or not out.startswith(b'$6$'):
        raise EvalError('libcrypt cannot hash a SHA-512 password')
    return out.decode('ascii')


def _rooted(root, path):
    return path if not root else os.path.join(root, path.lstrip('/'))


def _find_python(root, python):
    if python:
        return python
    if not root:
        return sys.executable or '/usr/bin/python3'
    for cand in ROOT_PYTHONS:
        if os.path.exists(_rooted(root, cand)):
            return cand
    raise EvalError('no python3 in the image root %s (tried %s)' % (root, ', '.join(ROOT_PYTHONS)))


def _normalise_query(query, timeout):
    if not isinstance(query, dict) or not query.get('service') or not query.get('user'):
        raise EvalError('a query needs service and user: %r' % (query,))
    ops = query.get('ops') or [query.get('op') or 'account']
    if isinstance(ops, str):
        ops = [ops]
    for op in ops:
        if op not in OPS:
            raise EvalError('unknown op %r (known: %s)' % (op, ', '.join(OPS)))
    out = dict(query)
    out['ops'] = list(ops)
    out.setdefault('timeout', timeout)
    return out


def evaluate(queries, tree=None, root=None, probe_users=(), module_overlay=None, binds=None,
             timeout=10.0, protect=True, python=None, files=None):
    """Run ``queries`` through the real libpam in a private mount namespace.
    See the module docstring for the contract.  Raises EvalError when the
    namespace cannot be set up."""
    start = time.time()
    if os.geteuid() != 0:
        raise EvalError('the PAM evaluator needs root (mount namespace, bind mounts, reading shadow)')
    queries = [_normalise_query(q, timeout) for q in queries]
    if root:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            raise EvalError('root %s is not a directory' % root)
        if not os.path.isdir(os.path.join(root, 'tmp')):
            raise EvalError('root %s has no /tmp to hold the evaluator' % root)
    if tree:
        tree = os.path.abspath(tree)
        if not os.path.isdir(tree):
            raise EvalError('tree %s is not a directory' % tree)
    work = tempfile.mkdtemp(prefix='pam-eval-')
    inside = '/tmp' if root else work          # the work dir as seen in the namespace
    try:
        os.chmod(work, 0o755)
        os.mkdir(os.path.join(work, 'tree'))
        os.mkdir(os.path.join(work, 'modules'))
        os.mkdir(os.path.join(work, 'scratch'))
        with open(os.path.join(work, 'runner.py'), 'w') as handle:
            handle.write(_own_source())
        users = []
        for user in probe_users or ():
            user = dict(user)
            if not user.get('name'):
                raise EvalError('a probe user needs a name: %r' % (user,))
            if user.get('password') is not None:
                user['hash'] = _crypt(user['password'])
            users.append(user)
        overlay = {}
        for name, src in (module_overlay or {}).items():
            if '/' in name:
                raise EvalError('module_overlay keys are module file names: %r' % name)
            if src is None:
                overlay[name] = None
                continue
            shutil.copy(src, os.path.join(work, 'modules', name))
            overlay[name] = os.path.join(inside, 'modules', name)
        bind_list = []
        for idx, (target, src) in enumerate(sorted((binds or {}).items())):
            mnt = os.path.join(work, 'bind%d' % idx)
            if os.path.isdir(src):
                os.mkdir(mnt)
            else:
                open(mnt, 'w').close()
            bind_list.append((target, src, mnt, os.path.join(inside, 'bind%d' % idx)))
        spec = {
            'queries': queries, 'root': root, 'inside': inside, 'work': work,
            'tree': os.path.join(inside, 'tree') if tree else None, 'tree_host': tree,
            'probe_users': users, 'module_overlay': overlay,
            'binds': list(bind_list), 'protect': bool(protect),
            'python': _find_python(root, python), 'files': dict(files or {}),
        }
        with open(os.path.join(work, 'spec.json'), 'w') as handle:
            json.dump(spec, handle)
        budget = sum(float(q['timeout']) + 1.0 for q in queries) + 60.0
        rfd, wfd = os.pipe()
        env = dict(os.environ)
        env['PAM_EVAL_RESULT_FD'] = str(wfd)
        try:
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                [sys.executable or '/usr/bin/python3', os.path.join(work, 'runner.py'), 'ns',
                 os.path.join(work, 'spec.json')],
                stdin=subprocess.DEVNULL if hasattr(subprocess, 'DEVNULL') else None,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(wfd,), env=env,
                close_fds=True)
        finally:
            os.close(wfd)
        out = _read_all(rfd, proc, start + budget)
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, start + budget - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise EvalError('the evaluator did not finish within %.0f s' % budget)
        if proc.returncode != 0 or not out:
            raise EvalError('the evaluator failed (exit %s): %s%s' % (
                proc.returncode, stderr.decode('utf-8', 'replace')[-4000:],
                stdout.decode('utf-8', 'replace')[-1000:]))
        result = json.loads(out.decode('utf-8'))
        if result.get('fatal'):
            raise EvalError(result['fatal'])
        result['elapsed'] = round(time.time() - start, 4)
        return result
    finally:
        _cleanup(work)


def _read_all(fd, proc, deadline):
    chunks = []
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                proc.kill()
                break
            ready, _w, _x = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    return b''.join(chunks)


def _cleanup(work):
    # bind mounts live only in the (gone) namespace; the work dir holds plain files
    shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# Public API: comparison


def result_key(result):
    """Default pairing key: service, user, ops and labels of the query."""
    q = result['query']
    return (q['service'], q['user'], tuple(q.get('ops') or [q.get('op') or 'account']),
            json.dumps(q.get('labels'), sort_keys=True))


def touched(result, tag='hung'):
    """Modules of the trace whose stand-in answered with ``tag``."""
    return ['%s %s' % (t['module'], t['function']) for t in result.get('trace') or [] if t.get('tag') == tag]


def describe(result):
    q = result['query']
    labels = q.get('labels')
    extra = ''
    if isinstance(labels, dict):
        extra = ' [%s]' % ', '.join('%s=%s' % (k, labels[k]) for k in sorted(labels))
    elif labels is not None:
        extra = ' [%s]' % (labels,)
    return '%s %s %s%s' % (q['service'], '+'.join(q.get('ops') or [q.get('op') or 'account']), q['user'], extra)


def compare(before, after, allowed=None, key=result_key, field='rc_name', hung_tag='hung'):
    """Violations (readable strings) between two result lists; see the module docstring."""
    violations = []
    old = dict((key(r), r) for r in before)
    new = dict((key(r), r) for r in after)
    for k in sorted(set(old) | set(new), key=repr):
        b, a = old.get(k), new.get(k)
        if b is None or a is None:
            violations.append('%s: only %s' % (describe(b or a), 'before' if a is None else 'after'))
            continue
        if b.get(field) != a.get(field) and not (allowed and allowed(b, a)):
            violations.append('%s: %s -> %s' % (describe(b), b.get(field), a.get(field)))
        if hung_tag:
            now = touched(a, hung_tag)
            if now and not touched(b, hung_tag):
                violations.append('%s: now touches a hung module (%s), did not before'
                                  % (describe(b), ', '.join(now)))
    return violations


def expectation_failures(results, allow=(), deny=()):
    """Readable lines for every result of a user in ``allow`` that is not
    PAM_SUCCESS, and of a user in ``deny`` that is PAM_SUCCESS or has no
    answer (timeout, error): what a lockout guard checks."""
    failures = []
    for res in results:
        user = res['query']['user']
        if user in allow and res['rc_name'] != 'PAM_SUCCESS':
            failures.append('%s: %s, must be allowed' % (describe(res), res['rc_name']))
        if user in deny and (res['status'] != 'ok' or res['rc_name'] == 'PAM_SUCCESS'):
            failures.append('%s: %s, must be denied' % (describe(res), res['rc_name']))
    return failures


def allowed_by(rules):
    """A predicate for ``compare``: a change is allowed when a rule
    matches its query (``service``, ``user``, ``op``; a missing key matches
    anything) and the new answer is what the rule's ``to`` allows: ``deny``
    (an answer that is not PAM_SUCCESS, not a timeout), ``allow``
    (PAM_SUCCESS) or ``any``."""
    def allowed(before, after):
        q = before['query']
        for rule in rules:
            if rule.get('service') not in (None, q['service']) or rule.get('user') not in (None, q['user']):
                continue
            if rule.get('op') not in (None, (q.get('ops') or [q.get('op')])[0]):
                continue
            to = rule.get('to', 'any')
            if to == 'any':
                return True
            if to == 'deny' and after['status'] == 'ok' and after['rc_name'] != 'PAM_SUCCESS':
                return True
            if to == 'allow' and after['rc_name'] == 'PAM_SUCCESS':
                return True
        return False
    return allowed


# --------------------------------------------------------------------------
# Namespace stage (runs as `python3 runner.py ns SPEC` on the host)

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def _b(value):
    return None if value is None else value.encode('utf-8', 'surrogateescape')


def mount(src, target, fstype=None, flags=0, data=None):
    if _lib().mount(_b(src), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'mount %s on %s (%s): %s' % (src, target, fstype or 'bind', os.strerror(err)))


def bind(src, target, readonly=False):
    mount(src, target, None, MS_BIND)
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def stage_ns(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    if _lib().unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNS) failed')
    mount(None, '/', None, MS_REC | MS_PRIVATE)
    work = spec['work']
    if spec.get('tree_host'):
        bind(spec['tree_host'], os.path.join(work, 'tree'), readonly=True)
    for _target, src, mnt, _inside in spec['binds']:
        bind(src, mnt, readonly=True)
    root = spec.get('root')
    if root:
        bind(root, root)
        mount(work, os.path.join(root, 'tmp'), None, MS_BIND | MS_REC)
        if os.path.isdir(os.path.join(root, 'dev')):
            mount('/dev', os.path.join(root, 'dev'), None, MS_BIND | MS_REC)
        if os.path.isdir(os.path.join(root, 'proc')):
            mount('proc', os.path.join(root, 'proc'), 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chroot(root)
        os.chdir('/')
    inside = spec['inside']
    runner = os.path.join(inside, 'runner.py')
    os.execv(spec['python'], [spec['python'], runner, 'run', os.path.join(inside, 'spec.json')])


# --------------------------------------------------------------------------
# Runner stage (inside the namespace, possibly inside the image root)


class _Runner(object):

    def __init__(self, spec):
        self.spec = spec
        self.inside = spec['inside']
        self.warnings = []
        self.scratch = None

    # ---- mounts

    def setup(self):
        if self.spec['protect']:
            self._readonly_everything()
        self.scratch = os.path.join(self.inside, 'scratch')
        mount('pam-eval', self.scratch, 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=0755')
        self.pamdir = os.path.join(self.scratch, 'pam')
        os.mkdir(self.pamdir)
        for name, text in self.spec.get('files', {}).items():
            with open(os.path.join(self.pamdir, name), 'w') as handle:
                handle.write(text)
        if self.spec['protect']:
            self._scratch_overlays()
            self._hide_sockets()
        self._capture_syslog()
        self._tree()
        self._probe_users()
        self._module_overlay()
        for target, _src, _mnt, inside in self.spec['binds']:
            self._bind_over(inside, target)

    def _readonly_everything(self):
        with open('/proc/self/mountinfo') as handle:
            lines = handle.read().splitlines()
        for line in lines:
            fields = line.split()
            point = fields[4].encode('latin-1').decode('unicode_escape') if '\\' in fields[4] else fields[4]
            if point.startswith(('/proc', '/sys', '/dev')) or 'ro' in fields[5].split(','):
                continue
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            for opt in fields[5].split(','):
                flags |= _OPT_FLAGS.get(opt, 0)
            try:
                mount(None, point, None, flags)
            except OSError as exc:
                self.warnings.append('could not make %s read-only: %s' % (point, exc))

    def _scratch_overlays(self):
        for idx, path in enumerate(SCRATCH_DIRS):
            if not os.path.isdir(path) or os.path.islink(path):
                continue
            upper = os.path.join(self.scratch, 'ovl%d' % idx)
            os.makedirs(os.path.join(upper, 'u'))
            os.makedirs(os.path.join(upper, 'w'))
            try:
                mount('overlay', path, 'overlay', 0, 'lowerdir=%s,upperdir=%s/u,workdir=%s/w' % (path, upper, upper))
            except OSError:
                mount('pam-eval', path, 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=0755')
                self.warnings.append('%s: overlayfs unavailable, an empty tmpfs stands in' % path)

    def _hide_sockets(self):
        for path in HIDDEN_SOCKETS:
            if os.path.exists(path) and not os.path.isdir(path):
                try:
                    bind('/dev/null', path)
                except OSError as exc:
                    self.warnings.append('could not hide %s: %s' % (path, exc))

    def _capture_syslog(self):
        """Modules' syslog lines go to a socket of ours instead of the
        system log (probes are not logins: no auth.log noise, no fail2ban);
        each result gets its own lines in ``log``."""
        self.log_sock = None
        if not os.path.exists(SYSLOG_SOCKET):
            self.warnings.append('%s does not exist: module log lines are not captured' % SYSLOG_SOCKET)
            return
        path = os.path.join(self.scratch, 'log')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        bind(path, SYSLOG_SOCKET)
        self.log_sock = sock

    def drain_log(self):
        lines = []
        while self.log_sock is not None:
            try:
                data = self.log_sock.recv(65536)
            except (OSError, IOError):
                break
            text = data.decode('utf-8', 'replace').rstrip('\n\x00')
            # "<PRI>Mmm dd hh:mm:ss ident[pid]: message" -> "ident: message"
            if text.startswith('<') and '>' in text:
                text = text[text.index('>') + 1:]
            if len(text) > 16 and text[3] == ' ' and text[6] == ' ' and text[9] == ':':
                text = text[16:]
            lines.append(text)
        return lines

    def _bind_over(self, src, target, readonly=True):
        if not os.path.lexists(target):
            raise EvalError('cannot mount over %s: it does not exist on this system' % target)
        if os.path.isdir(src) != os.path.isdir(target):
            raise EvalError('cannot mount %s over %s: one is a directory, the other is not' % (src, target))
        bind(src, target, readonly=readonly)

    def _tree(self):
        tree = self.spec.get('tree')
        if not tree:
            return
        present = [p for p in TREE_PATHS if os.path.lexists(os.path.join(tree, p.lstrip('/')))]
        for path in present:
            if not os.path.lexists(path):
                self._make_mountpoint(path, os.path.isdir(os.path.join(tree, path.lstrip('/'))))
        for path in TREE_PATHS:
            src = os.path.join(tree, path.lstrip('/'))
            if path in present:
                self._bind_over(src, path)
            elif path == VENDOR_DIR and os.path.isdir(path):
                mount('pam-eval', path, 'tmpfs', MS_NOSUID | MS_NODEV | MS_RDONLY, 'mode=0755')

    def _make_mountpoint(self, path, is_dir):
        """Create ``path`` (missing on this system) inside the namespace: an
        overlay (upper layer in the scratch tmpfs) over its parent directory,
        then the directory or file in the merged view."""
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise EvalError('cannot mount the tree\'s %s: %s does not exist on this system' % (path, parent))
        upper = os.path.join(self.scratch, 'mp-%s' % path.strip('/').replace('/', '_'))
        os.makedirs(os.path.join(upper, 'u'))
        os.makedirs(os.path.join(upper, 'w'))
        try:
            mount('overlay', parent, 'overlay', 0, 'lowerdir=%s,upperdir=%s/u,workdir=%s/w' % (parent, upper, upper))
        except OSError as exc:
            raise EvalError('the tree has %s, this system does not, and no overlay can create it: %s' % (path, exc))
        if is_dir:
            os.mkdir(path)
        else:
            open(path, 'w').close()
        self.warnings.append('%s does not exist on this system: created in the namespace for the tree' % path)

    def _read(self, path):
        try:
            with open(path) as handle:
                text = handle.read()
        except IOError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return ''
        return text if not text or text.endswith('\n') else text + '\n'

    def _write_over(self, name, text, target, mode=0o644):
        path = os.path.join(self.scratch, name)
        with open(path, 'w') as handle:
            handle.write(text)
        os.chmod(path, mode)
        self._bind_over(path, target)

    def _probe_users(self):
        users = self.spec.get('probe_users') or []
        if not users:
            return
        by_source = {'files': [], 'extrausers': []}
        for user in users:
            source = user.get('source', 'files')
            if source not in by_source:
                raise EvalError('probe user %s: unknown source %r' % (user['name'], source))
            by_source[source].append(user)
        if by_source['files']:
            self._add_users('/etc', by_source['files'], 'files')
        if by_source['extrausers']:
            if not os.path.isdir(EXTRAUSERS_DIR):
                raise EvalError('probe users with source=extrausers need %s (libnss-extrausers)' % EXTRAUSERS_DIR)
            self._add_users(EXTRAUSERS_DIR, by_source['extrausers'], 'extra')
            conf = self._read('/etc/nsswitch.conf')
            out = []
            for line in conf.splitlines():
                db = line.split(':', 1)[0].strip()
                if db in ('passwd', 'group', 'shadow') and 'extrausers' not in line:
                    line = line.split('#', 1)[0].rstrip() + ' extrausers'
                out.append(line)
            self._write_over('nsswitch.conf', '\n'.join(out) + '\n', '/etc/nsswitch.conf')

    def _add_users(self, directory, users, prefix):
        passwd = self._read(os.path.join(directory, 'passwd'))
        group = self._read(os.path.join(directory, 'group'))
        shadow = self._read(os.path.join(directory, 'shadow'))
        groups = []   # [name, gid, members]
        for line in group.splitlines():
            parts = line.split(':')
            if len(parts) >= 4:
                groups.append([parts[0], parts[2], [m for m in parts[3].split(',') if m], line])
            else:
                groups.append([None, None, None, line])
        used_gids = set(int(g[1]) for g in groups if g[1] and g[1].isdigit())
        lines_p, lines_s = [], []
        existing = set(line.split(':', 1)[0] for line in passwd.splitlines() if ':' in line)
        rehash = {}
        for user in users:
            name = user['name']
            if name in existing:
                # an existing user: only its password (if given) and extra groups change
                if user.get('hash'):
                    rehash[name] = user['hash']
                self._join_groups(groups, used_gids, name, user.get('groups'))
                continue
            uid = int(user.get('uid', 60000 + len(lines_p)))
            gid = int(user.get('gid', uid))
            lines_p.append('%s:x:%d:%d:%s:%s:%s' % (
                name, uid, gid, user.get('gecos', 'pam-eval probe'), user.get('home', '/home/%s' % name),
                user.get('shell', '/bin/bash')))
            lines_s.append('%s:%s:19000:0:99999:7:::' % (name, user.get('hash', '*')))
            if gid not in used_gids and user.get('create_group', True):
                groups.append([name, str(gid), [], None])
                used_gids.add(gid)
            self._join_groups(groups, used_gids, name, user.get('groups'))
        group_text = ''
        for gname, gid, members, line in groups:
            if line is None:
                line = '%s:x:%s:%s' % (gname, gid, ','.join(members))
            group_text += line + '\n'
        kept = []
        for line in shadow.splitlines():
            parts = line.split(':')
            if len(parts) > 2 and parts[0] in rehash:
                parts[1] = rehash[parts[0]]
                line = ':'.join(parts)
            kept.append(line + '\n')
        shadow_text = ''.join(kept) + ''.join(l + '\n' for l in lines_s)
        passwd_text = passwd + ''.join(l + '\n' for l in lines_p)
        if directory != '/etc':
            # the whole directory is replaced (its files may not exist yet)
            path = os.path.join(self.scratch, prefix)
            os.mkdir(path)
            for name, text, mode in (('passwd', passwd_text, 0o644), ('group', group_text, 0o644),
                                     ('shadow', shadow_text, 0o640)):
                with open(os.path.join(path, name), 'w') as handle:
                    handle.write(text)
                os.chmod(os.path.join(path, name), mode)
            self._bind_over(path, directory)
            return
        self._write_over(prefix + '-passwd', passwd_text, '/etc/passwd')
        self._write_over(prefix + '-group', group_text, '/etc/group')
        self._write_over(prefix + '-shadow', shadow_text, '/etc/shadow', mode=0o640)

    @staticmethod
    def _join_groups(groups, used_gids, name, names):
        for gname in names or []:
            entry = [g for g in groups if g[0] == gname]
            if not entry:
                new_gid = 61000
                while new_gid in used_gids:
                    new_gid += 1
                used_gids.add(new_gid)
                entry = [[gname, str(new_gid), [], None]]
                groups.append(entry[0])
            if name not in entry[0][2]:
                entry[0][2].append(name)
                entry[0][3] = None

    def _module_overlay(self):
        overlay = self.spec.get('module_overlay') or {}
        if not overlay:
            return
        dirs, seen = [], set()
        for pattern in MODULE_DIR_GLOBS:
            for path in sorted(glob.glob(pattern)):
                real = os.path.realpath(path)
                if os.path.isdir(real) and real not in seen:
                    seen.add(real)
                    dirs.append(real)
        if not dirs:
            raise EvalError('no PAM module directory found (%s)' % ', '.join(MODULE_DIR_GLOBS))
        for idx, path in enumerate(dirs):
            orig = os.path.join(self.scratch, 'orig%d' % idx)
            os.mkdir(orig)
            bind(path, orig, readonly=True)
            mount('pam-eval', path, 'tmpfs', MS_NOSUID | MS_NODEV, 'mode=0755')
            for entry in os.listdir(orig):
                if entry not in overlay:
                    os.symlink(os.path.join(orig, entry), os.path.join(path, entry))
            for name, src in overlay.items():
                if src is not None:
                    shutil.copy(src, os.path.join(path, name))
                    os.chmod(os.path.join(path, name), 0o755)
            mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)

    # ---- transactions

    def run(self):
        os.environ['PAM_EVAL_DIR'] = self.pamdir
        # loaded once here, inherited by every transaction process (no state
        # before pam_start; saves a dlopen per query)
        ctypes.CDLL('libpam.so.0', mode=ctypes.RTLD_GLOBAL)
        results = []
        for query in self.spec['queries']:
            results.append(self._one(query))
        return results

    def _one(self, query):
        trace = os.path.join(self.pamdir, 'trace')
        open(trace, 'w').close()
        self.drain_log()
        start = time.time()
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(rfd)
                os.setpgid(0, 0)
                out = json.dumps(transaction(query)).encode('utf-8') + b'\n'
                while out:
                    out = out[os.write(wfd, out):]
            except BaseException:  # pylint: disable=broad-except
                code = 70
            finally:
                os._exit(code)
        os.close(wfd)
        deadline = start + float(query['timeout'])
        buf = b''
        status = None
        log = []
        while b'\n' not in buf:
            left = deadline - time.time()
            if left <= 0:
                status = 'timeout'
                break
            # the log socket is drained while the transaction runs: its queue
            # holds only net.unix.max_dgram_qlen (often 10) messages, and a
            # module's syslog() blocks when it is full
            fds = [rfd] + ([self.log_sock] if self.log_sock is not None else [])
            ready, _w, _x = select.select(fds, [], [], left)
            if self.log_sock is not None and self.log_sock in ready:
                log.extend(self.drain_log())
            if rfd in ready:
                data = os.read(rfd, 65536)
                if not data:
                    break
                buf += data
        os.close(rfd)
        if status == 'timeout':
            for target in (-pid, pid):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
        os.waitpid(pid, 0)
        elapsed = round(time.time() - start, 4)
        result = {'query': query, 'elapsed': elapsed, 'trace': _read_trace(trace),
                  'steps': [], 'messages': [], 'env': {}, 'log': log + self.drain_log()}
        if status == 'timeout':
            result.update(status='timeout', rc=None, rc_name='timeout',
                          error='no answer within %s s; the transaction was killed' % query['timeout'])
        elif b'\n' not in buf:
            result.update(status='error', rc=None, rc_name='error', error='the transaction process died')
        else:
            result.update(json.loads(buf.split(b'\n', 1)[0].decode('utf-8')))
        return result


def _read_trace(path):
    out = []
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except IOError:
        return out
    for line in lines:
        words = line.split()
        if len(words) < 5:
            continue
        try:
            rc = int(words[3])
        except ValueError:
            rc = words[3]
        out.append({'module': words[0], 'function': words[1], 'user': words[2], 'rc': rc,
                    'tag': words[4], 'extra': words[5:]})
    return out


# ---- libpam through ctypes


class _PamMessage(ctypes.Structure):
    _fields_ = [('msg_style', ctypes.c_int), ('msg', ctypes.c_char_p)]


class _PamResponse(ctypes.Structure):
    _fields_ = [('resp', ctypes.c_void_p), ('resp_retcode', ctypes.c_int)]


_CONV_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(_PamMessage)),
                              ctypes.POINTER(ctypes.POINTER(_PamResponse)), ctypes.c_void_p)


_DELAY_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class _PamConv(ctypes.Structure):
    _fields_ = [('conv', _CONV_FUNC), ('appdata_ptr', ctypes.c_void_p)]


def libpam_path():
    with open('/proc/self/maps') as handle:
        for line in handle:
            if 'libpam.so' in line:
                return os.path.realpath(line.split()[-1])
    return None


def transaction(query):
    """One PAM transaction in this process (the runner forks for it)."""
    libc = ctypes.CDLL(None)      # the C library the interpreter runs on (find_library would spawn ldconfig)
    libc.calloc.restype = ctypes.c_void_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.strdup.restype = ctypes.c_void_p
    libc.strdup.argtypes = [ctypes.c_char_p]
    libc.free.argtypes = [ctypes.c_void_p]
    # RTLD_GLOBAL as for a program linked with -lpam: modules that do not
    # link libpam themselves still find its symbols
    pam = ctypes.CDLL('libpam.so.0', mode=ctypes.RTLD_GLOBAL)
    handle = ctypes.c_void_p()
    pam.pam_start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_PamConv),
                              ctypes.POINTER(ctypes.c_void_p)]
    pam.pam_set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    pam.pam_putenv.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pam.pam_getenvlist.argtypes = [ctypes.c_void_p]
    pam.pam_getenvlist.restype = ctypes.POINTER(ctypes.c_void_p)
    pam.pam_end.argtypes = [ctypes.c_void_p, ctypes.c_int]
    for fn in ('pam_authenticate', 'pam_acct_mgmt', 'pam_setcred', 'pam_open_session',
               'pam_close_session', 'pam_chauthtok'):
        getattr(pam, fn).argtypes = [ctypes.c_void_p, ctypes.c_int]
    messages = []
    password = query.get('password')
    echo_on = query.get('echo_on', query['user'])

    def conv(num, msgs, resp, _appdata):
        replies = libc.calloc(num, ctypes.sizeof(_PamResponse))
        if not replies:
            return PAM_RC['PAM_BUF_ERR']
        arr = ctypes.cast(replies, ctypes.POINTER(_PamResponse))
        for i in range(num):
            style = msgs[i].contents.msg_style
            text = (msgs[i].contents.msg or b'').decode('utf-8', 'replace')
            messages.append({'style': MSG_STYLES.get(style, str(style)), 'text': text})
            answer = None
            if style == 1:
                answer = password
            elif style == 2:
                answer = echo_on
            if style in (1, 2):
                if answer is None:
                    for j in range(i):
                        libc.free(arr[j].resp)
                    libc.free(replies)
                    return PAM_RC['PAM_CONV_ERR']
                arr[i].resp = libc.strdup(answer.encode('utf-8'))
        resp[0] = arr
        return 0

    conv_func = _CONV_FUNC(conv)
    conv_struct = _PamConv(conv_func, None)
    steps = []
    rc = pam.pam_start(query['service'].encode(), query['user'].encode(), ctypes.byref(conv_struct),
                       ctypes.byref(handle))
    if rc != 0:
        steps.append({'op': 'start', 'rc': rc, 'rc_name': rc_name(rc)})
        return {'status': 'ok', 'rc': rc, 'rc_name': rc_name(rc), 'steps': steps, 'messages': messages,
                'env': {}, 'libpam': libpam_path()}
    keep = []
    for item, key in ((PAM_RHOST, 'rhost'), (PAM_TTY, 'tty'), (PAM_RUSER, 'ruser')):
        if query.get(key) is not None:
            value = ctypes.c_char_p(query[key].encode('utf-8'))
            keep.append(value)
            pam.pam_set_item(handle, item, ctypes.cast(value, ctypes.c_void_p))
    if not query.get('fail_delay'):
        # no delay after a failure (as an application that sets its own
        # PAM_FAIL_DELAY function); the answers are the same, only faster
        delay = _DELAY_FUNC(lambda _rc, _usec, _data: None)
        keep.append(delay)
        pam.pam_set_item(handle, PAM_FAIL_DELAY, ctypes.cast(delay, ctypes.c_void_p))
    for name, value in sorted((query.get('pam_env') or {}).items()):
        pam.pam_putenv(handle, ('%s=%s' % (name, value)).encode('utf-8'))
    flags = int(query.get('flags') or 0)
    calls = {'auth': (pam.pam_authenticate, flags), 'account': (pam.pam_acct_mgmt, flags),
             'setcred': (pam.pam_setcred, flags | PAM_ESTABLISH_CRED),
             'open_session': (pam.pam_open_session, flags), 'chauthtok': (pam.pam_chauthtok, flags)}
    opened = False
    for op in query['ops']:
        fn, fl = calls[op]
        rc = fn(handle, fl)
        steps.append({'op': op, 'rc': rc, 'rc_name': rc_name(rc)})
        if op == 'open_session' and rc == 0:
            opened = True
        if rc != 0 and not query.get('all_ops'):
            break
    env = {}
    envlist = pam.pam_getenvlist(handle)
    if envlist:
        i = 0
        while envlist[i]:
            item = ctypes.cast(envlist[i], ctypes.c_char_p).value.decode('utf-8', 'replace')
            name, _sep, value = item.partition('=')
            env[name] = value
            libc.free(envlist[i])
            i += 1
        libc.free(ctypes.cast(envlist, ctypes.c_void_p))
    last = rc
    if opened:
        crc = pam.pam_close_session(handle, flags)
        steps.append({'op': 'close_session', 'rc': crc, 'rc_name': rc_name(crc)})
    pam.pam_end(handle, last)
    return {'status': 'ok', 'rc': last, 'rc_name': rc_name(last), 'steps': steps, 'messages': messages,
            'env': env, 'libpam': libpam_path()}


def stage_run(spec_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    fd = int(os.environ['PAM_EVAL_RESULT_FD'])
    os.set_inheritable(fd, False)
    out = {'results': [], 'warnings': []}
    runner = _Runner(spec)
    try:
        runner.setup()
        out['results'] = runner.run()
        out['libpam'] = next((r.get('libpam') for r in out['results'] if r.get('libpam')), None)
        out['python'] = '%d.%d.%d' % tuple(sys.version_info[:3])
        for res in out['results']:
            res.pop('libpam', None)
    except EvalError as exc:
        out['fatal'] = str(exc)
    out['warnings'] = runner.warnings
    data = json.dumps(out).encode('utf-8')
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)


def main(argv):
    if len(argv) == 3 and argv[1] == 'ns':
        stage_ns(argv[2])
    elif len(argv) == 3 and argv[1] == 'run':
        stage_run(argv[2])
    elif len(argv) == 3 and argv[1] == 'eval':
        with open(argv[2]) as handle:
            spec = json.load(handle)
        json.dump(evaluate(**spec), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write('\n')
    else:
        sys.stderr.write('usage: %s eval SPEC.json | ns SPEC | run SPEC\n' % argv[0])
        return 2
    return 0


if __name__ == '__main__':
    raise SystemExit(main(sys.argv))
