#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pam_stack_info
short_description: Show the effective PAM stack of a service and check that pam_slurm_adopt cannot be bypassed
version_added: "0.1.0"
description:
  - Read-only. Parses the service's PAM file and everything it includes (C(@include), C(include), C(substack))
    with the same parser as M(hpc.slurm_adopt.pam_adopt) and returns the effective stack of one type, with the
    origin of each rule (file, line, include chain).
  - Also returns every file reachable from the service (any type), where C(pam_systemd.so) or C(pam_elogind.so)
    is still active, the rules that can end the account stack before the adopt rule, and whether the adopt
    rule is last.
  - Checks the admin bypass file the managed rules read (missing, rewritten since pam_adopt wrote it, or
    admitting everyone) and the kept bypass rules before the adopt rule for whom they let in (RV(fail_open)).
    With O(probe) it also asks the node's real libpam whether an ordinary user without a job gets in.
  - Every finding is in RV(problems); the module itself never fails on them (use an assert, or role
    P(hpc.slurm_adopt.adopt_pam#role)'s C(verify) entry point, which turns red).
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
extends_documentation_fragment:
  - hpc.slurm_adopt._pam_tree
options:
  service:
    description: PAM service name (a file in O(pamd_dir); C(other) is used when it does not exist, as Linux-PAM does).
    type: str
    default: sshd
  type:
    description: Module type whose effective stack is returned in RV(stack).
    type: str
    choices: [account, auth, password, session]
    default: account
  adopt_match:
    description:
      - How the adopt rule is recognised. V(managed) accepts only the rule written by M(hpc.slurm_adopt.pam_adopt);
        V(any) accepts any rule whose module or arguments mention C(pam_slurm_adopt).
    type: str
    choices: [managed, any]
    default: any
  probe:
    description:
      - Also run the account stack through the node's real libpam in a private mount namespace with a probe user
        (an ordinary local user without a job, at the site's first regular uid; the adopt rule answers as for a
        user without a job). Needs root. A probe that gets in is a problem.
    type: bool
    default: false
seealso:
  - module: hpc.slurm_adopt.pam_adopt
attributes:
  check_mode:
    support: full
    description: Read-only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
'''

EXAMPLES = r'''
---
- name: Inspect the sshd account stack, asking the real libpam about a user without a job
  hpc.slurm_adopt.pam_stack_info:
    service: sshd
    probe: true
  become: true
  register: sshd_pam

- name: The node is healthy
  ansible.builtin.assert:
    that:
      - sshd_pam.problems | length == 0
    fail_msg: "{{ sshd_pam.problems }}"
'''

RETURN = r'''
service_file:
  description: The file Linux-PAM reads for the service (C(other) when the service has none).
  returned: always
  type: str
  sample: /etc/pam.d/sshd
stack:
  description: >-
    Effective stack of O(type) in evaluation order. Each rule has file, line, text, type, dash, control,
    module, args, managed (tag of a rule written by pam_adopt or null), include_chain (list of file/line/via),
    substack_depth and entry (rule, substack for the handler of a substack line, must_fail for a broken line).
  returned: always
  type: list
  elements: dict
files:
  description: Every file reachable from the service for any type, in order.
  returned: always
  type: list
  elements: str
  sample: [/etc/pam.d/sshd, /etc/pam.d/common-auth, /etc/pam.d/common-account]
pam_systemd:
  description: Active C(pam_systemd.so) and C(pam_elogind.so) rules (any type) in the reachable files.
  returned: always
  type: list
  elements: dict
adopt_rule:
  description: The adopt rule found in the account stack (last one), or null.
  returned: always
  type: dict
adopt_last:
  description: >-
    True when an adopt rule is in the top level of the account stack and only the admin access rule
    written by pam_adopt may follow it.
  returned: always
  type: bool
after_adopt:
  description: Account rules evaluated after the adopt rule.
  returned: always
  type: list
  elements: dict
short_circuits:
  description: >-
    Account rules before adopt that can end the stack successfully for an ordinary user (to be fixed),
    with classification short_circuit, expired_password or jump_past_adopt.
  returned: always
  type: list
  elements: dict
kept_terminators:
  description: Rules before adopt that can end the stack and are meant as bypasses (system_users, admin_bypass).
  returned: always
  type: list
  elements: dict
fail_open:
  description: >-
    Rules before adopt that let an ordinary user without a job in (file, line, text, why): a pam_access whose
    rules admit everyone, pam_listfile with onerr=succeed or sense=deny, pam_succeed_if uid < N or pam_usertype
    issystem reaching the site's first regular uid, a short-circuit.
  returned: always
  type: list
  elements: dict
admin_access:
  description: >-
    The admin bypass file read by the managed rules: mode (pam_access, pam_listfile or null), file, state (ok,
    missing, rewritten, fail_open, shared) and problems.
  returned: always
  type: dict
probe:
  description: >-
    With O(probe): name and uid of the probe user, let_in (true when the real libpam lets it through the account
    stack), or error (why the evaluator could not run).
  returned: when probe=true
  type: dict
disabled_by_us:
  description: Lines switched off by pam_adopt (file, line, reason).
  returned: always
  type: list
  elements: dict
missing_includes:
  description: Included files that do not exist.
  returned: always
  type: list
  elements: dict
errors:
  description: Problems that make Linux-PAM fail the stack (unparsable lines, missing includes, loops).
  returned: always
  type: list
  elements: str
problems:
  description: Human-readable summary of everything that is not as pam_slurm_adopt needs it (empty when healthy).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_stack import (
    FileSource, effective_stack, analyse_account, reachable_files, is_adopt_rule,
)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_health import (
    GuardError, admin_access_report, fail_open_report, probe_report,
)
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_guard import site_facts

SESSION_MODULES = ('pam_systemd.so', 'pam_elogind.so')


def _is_managed_adopt(line):
    return line.added_tag == 'adopt'


def inspect(params):
    source = FileSource(params['root'], params['pamd_dir'], params['vendor_dir'])
    service = params['service']
    stack = effective_stack(source, service, params['type'])
    account = stack if params['type'] == 'account' else effective_stack(source, service, 'account')
    predicate = _is_managed_adopt if params['adopt_match'] == 'managed' else is_adopt_rule
    result = analyse_account(account, predicate)
    files = reachable_files(source, service)
    systemd = []
    ours = []
    for path in files:
        for line in source.load(path).lines:
            if line.kind == 'rule' and line.module_name in SESSION_MODULES:
                systemd.append(line.to_dict())
            if line.disabled_tag:
                ours.append({'file': path, 'line': line.lineno, 'reason': line.disabled_tag,
                             'text': line.raw.rstrip('\n')})
    after = [e.to_dict() for e in result['after_adopt']]
    adopt_last = result['adopt_index'] is not None and all(e['managed'] == 'admin_access' for e in after)
    bad = ('short_circuit', 'jump_past_adopt', 'expired_password')
    shorts = [t for t in result['terminators'] if t['classification'] in bad]
    kept = [t for t in result['terminators'] if t['classification'] not in bad]
    facts = site_facts(params['root'], params.get('directory_uid_min'))
    fail_open = fail_open_report(params['root'], account, facts, predicate)
    access = admin_access_report(params['root'], account, params['state_dir'])
    problems = list(account.errors)
    if result['adopt_index'] is None:
        problems.append('no pam_slurm_adopt rule in the %s account stack' % service)
    elif not adopt_last:
        problems.append('pam_slurm_adopt is not last in the account stack: followed by %s'
                        % ', '.join('%s:%d' % (e['file'], e['line']) for e in after))
    for term in shorts:
        problems.append('%s:%d can end the account stack before pam_slurm_adopt (%s)'
                        % (term['file'], term['line'], term['reason']))
    shorts_at = set((t['file'], t['line']) for t in shorts)
    for item in fail_open:
        if (item['file'], item['line']) not in shorts_at:
            problems.append('%s:%d "%s" lets an ordinary user without a job in: %s'
                            % (item['file'], item['line'], item['text'], item['why']))
    problems.extend(access['problems'])
    for line in systemd:
        problems.append('%s is active at %s:%d' % (line['module'].rsplit('/', 1)[-1][:-3], line['file'], line['line']))
    out = dict(
        changed=False,
        service_file=stack.path,
        stack=[e.to_dict() for e in stack.entries],
        files=files,
        pam_systemd=systemd,
        adopt_rule=account.entries[result['adopt_index']].to_dict() if result['adopt_index'] is not None else None,
        adopt_last=adopt_last,
        after_adopt=after,
        short_circuits=shorts,
        kept_terminators=kept,
        fail_open=fail_open,
        admin_access=access,
        disabled_by_us=ours,
        missing_includes=[{'name': n, 'file': f, 'line': ln} for n, f, ln in stack.missing],
        errors=list(stack.errors),
        problems=problems,
    )
    if params.get('probe'):
        try:
            probe = probe_report(params['root'], [service], facts, params['pamd_dir'], params['vendor_dir'])
            out['probe'] = dict(probe['probe'], let_in=service in probe['let_in'])
            if out['probe']['let_in']:
                problems.append('the real libpam lets an ordinary user without a job (probe user %s, uid %d) '
                                'through the %s account stack'
                                % (probe['probe']['name'], probe['probe']['uid'], service))
        except GuardError as exc:
            out['probe'] = {'error': str(exc)}
            problems.append('the real-libpam probe could not run: %s' % exc)
    return out


def argument_spec():
    return dict(
        service=dict(type='str', default='sshd'),
        type=dict(type='str', default='account', choices=['account', 'auth', 'password', 'session']),
        root=dict(type='path', default='/'),
        pamd_dir=dict(type='path', default='/etc/pam.d'),
        vendor_dir=dict(type='path', default='/usr/lib/pam.d'),
        state_dir=dict(type='path', default='/var/lib/slurm-adopt/pam'),
        directory_uid_min=dict(type='int'),
        adopt_match=dict(type='str', default='any', choices=['managed', 'any']),
        probe=dict(type='bool', default=False),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    service = module.params['service']
    if not service or '/' in service:
        module.fail_json(msg='service: %r is not a PAM service name' % service)
    try:
        module.exit_json(**inspect(module.params))
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read PAM configuration: %s' % exc)


if __name__ == '__main__':
    main()
