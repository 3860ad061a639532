# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only checks of an adopted node's account stack, for pam_stack_info,
role adopt_pam's verify entry point, the health check and the drift check.

Standard library only, Python 3.6+, no Ansible imports.

* :func:`admin_access_report`: is the admin access file that the managed
  pam_access (or pam_listfile) rule reads still there and still what
  pam_adopt wrote?  A missing access file makes pam_access abort (everyone
  without a job, root included, is refused); an emptied or rewritten one
  may admit everyone.
* :func:`fail_open_report`: which rules before the adopt rule let an
  ordinary user without a job in (a pam_access whose rules admit everyone,
  pam_listfile with ``onerr=succeed`` or ``sense=deny``,
  ``pam_succeed_if uid < N`` / ``pam_usertype issystem`` reaching the
  site's first regular uid, a plain short-circuit).
* :func:`probe_report`: the same question asked of the real libpam with a
  probe user (module_utils/_pam_guard, needs root).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import (
    analyse_account, effective_stack, rooted, succeed_if_uid_limit,
)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_guard import (
    GuardError, PROBE_USER, site_facts, lockout_guard,
)

ACCESS_HEADER_START = '# hpc.slurm_adopt: who may log in without a Slurm job'
SHARED_ACCESS_FILE = '/etc/security/access.conf'


def _read(root, path):
    try:
        with open(rooted(root, path), 'rb') as handle:
            return handle.read().decode('utf-8', 'surrogateescape')
    except (IOError, OSError):
        return None


def _arg(line, name):
    for arg in line.args:
        if arg.startswith(name + '='):
            return arg.split('=', 1)[1]
    return None


def access_rules_of(text):
    """The rules of a pam_access file: [(perm, users, origins)]."""
    rules = []
    for raw in (text or '').splitlines():
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        parts = line.split(':', 2)
        if len(parts) == 3:
            rules.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return rules


def access_admits_everyone(rules, user=PROBE_USER, groups=()):
    """True when these pam_access rules admit an ordinary user with no
    groups from anywhere (first match; no rule matching means "granted"),
    False when they deny, None when it depends on things a reading cannot
    tell (EXCEPT, netgroups, origins other than ALL before a deny)."""
    for perm, users, origins in rules:
        words = users.split()
        if 'EXCEPT' in words:
            if words[0] == 'ALL' and user not in words and not set(w.strip('()') for w in words) & set(groups):
                hit = True
            else:
                return None
        else:
            hit = any(w == 'ALL' or w == user or w.strip('()') in groups for w in words)
            if any(w.startswith('@') for w in words) and not hit:
                return None
        if not hit:
            continue
        if origins.split() != ['ALL']:
            if perm == '+':
                return None      # admitted from some origins
            continue             # denied from some origins only: look further
        return perm == '+'
    return True


def _manifest(root, state_dir):
    text = _read(root, os.path.join(state_dir, 'manifest.json'))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def admin_access_report(root, stack, state_dir='/var/lib/slurm-adopt/pam'):
    """State of the admin bypass file the managed rules of ``stack`` read.

    Returns dict(mode, file, state, problems): mode pam_access /
    pam_listfile / None (no managed bypass); state ok, missing, rewritten
    (differs from what pam_adopt wrote), fail_open (its rules admit an
    ordinary user) or shared (the managed rule reads the shared
    access.conf)."""
    import hashlib
    out = {'mode': None, 'file': None, 'state': 'ok', 'problems': []}
    managed = [e.line for e in stack.entries if e.kind == 'rule' and e.line.added_tag == 'admin_access']
    if not managed:
        return out
    line = managed[0]
    manifest = _manifest(root, state_dir) or {}
    if line.module_name == 'pam_access.so':
        path = _arg(line, 'accessfile') or SHARED_ACCESS_FILE
        out.update(mode='pam_access', file=path)
    elif line.module_name == 'pam_listfile.so':
        path = _arg(line, 'file')
        out.update(mode='pam_listfile', file=path)
    else:
        return out
    text = _read(root, path)
    meta = (manifest.get('files') or {}).get(path) or {}
    if text is None:
        out['state'] = 'missing'
        if out['mode'] == 'pam_access':
            out['problems'].append('the admin access file %s is missing: pam_access aborts, so every user without a '
                                   'job is refused, root and the administrators included' % path)
        else:
            out['problems'].append('the admin list %s is missing: pam_listfile (onerr=fail) refuses the '
                                   'administrators without a job' % path)
        return out
    if meta.get('written_sha256') and hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest() != \
            meta['written_sha256']:
        out['state'] = 'rewritten'
        out['problems'].append('the admin access file %s is not what pam_adopt wrote (rewritten by another tool or '
                               'by hand); run role adopt_pam again' % path)
    if out['mode'] == 'pam_access':
        if path == SHARED_ACCESS_FILE:
            out['state'] = 'shared'
            out['problems'].append('the managed pam_access rule reads the shared %s (written by an older version): '
                                   'every service with pam_access reads those rules; run role adopt_pam again' % path)
        elif not text.startswith(ACCESS_HEADER_START) and out['state'] == 'ok':
            out['state'] = 'rewritten'
            out['problems'].append('the admin access file %s lost the header pam_adopt writes (rewritten by another '
                                   'tool?)' % path)
        verdict = access_admits_everyone(access_rules_of(text))
        if verdict is not False:
            out['state'] = 'fail_open'
            out['problems'].append('the admin access file %s %s an ordinary user without a job (its rules do not '
                                   'end with "-:ALL:ALL")' % (path, 'admits' if verdict else 'may admit'))
    return out


def fail_open_report(root, stack, facts=None, adopt_predicate=None):
    """Rules before the adopt rule (top level) that let an ordinary user
    without a job in: list of dict(file, line, text, why)."""
    facts = facts or site_facts(root)
    result = analyse_account(stack, adopt_predicate)
    uid, why_uid = facts.first_regular_uid()
    out = []
    lines = dict(((e.line.path, e.line.lineno), e.line) for e in stack.entries)
    for term in result['terminators']:
        line = lines.get((term['file'], term['line']))
        if line is None:
            continue
        name = line.module_name
        why = None
        if term['classification'] in ('short_circuit', 'jump_past_adopt', 'expired_password'):
            why = 'ends the account stack before pam_slurm_adopt for ordinary users (%s)' % term['reason']
        elif name == 'pam_listfile.so':
            if 'onerr=succeed' in line.args:
                why = ('onerr=succeed: when %s cannot be read (missing, unmounted) everybody gets in'
                       % (_arg(line, 'file') or 'the list'))
            if _arg(line, 'sense') == 'deny':
                why = 'sense=deny: every user NOT in %s gets in' % (_arg(line, 'file') or 'the list')
            listfile = _arg(line, 'file')
            if listfile and _read(root, listfile) is None and 'onerr=succeed' in line.args:
                why = '%s is missing and onerr=succeed: everybody gets in now' % listfile
        elif name == 'pam_succeed_if.so':
            limit = succeed_if_uid_limit(line.args)
            if limit is not None and limit > uid:
                why = 'matches uid %d, and ordinary users start at %d (%s)' % (uid, uid, why_uid)
        elif name == 'pam_usertype.so' and 'issystem' in line.args:
            if facts.sys_uid_max >= uid:
                why = 'treats uids up to SYS_UID_MAX %d as system users, and ordinary users start at %d (%s)' % (
                    facts.sys_uid_max, uid, why_uid)
        elif name == 'pam_access.so' and line.added_tag != 'admin_access':
            path = _arg(line, 'accessfile') or SHARED_ACCESS_FILE
            text = _read(root, path)
            verdict = access_admits_everyone(access_rules_of(text)) if text is not None else False
            if verdict:
                why = 'the rules of %s admit an ordinary user without a job' % path
        if why:
            out.append({'file': term['file'], 'line': term['line'], 'text': term['text'], 'why': why})
    return out


def probe_report(root, services, facts=None, pamd_dir='/etc/pam.d', vendor_dir='/usr/lib/pam.d'):
    """Ask the real libpam whether an ordinary user without a job (the probe
    user, adopt rules modelled as "no job") gets through the account stack
    of ``services`` as the node is now.  Returns dict(let_in=[services],
    probe={...}) or raises GuardError."""
    from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import FileSource
    facts = facts or site_facts(root)
    src = FileSource(root, pamd_dir, vendor_dir)
    result = lockout_guard(root, None, {}, src, src, list(services), [], facts, pamd_dir, vendor_dir)
    return {'let_in': result['let_in'], 'probe': result['probe']}


__all__ = ['admin_access_report', 'fail_open_report', 'probe_report', 'access_admits_everyone', 'access_rules_of',
           'GuardError', 'effective_stack']
