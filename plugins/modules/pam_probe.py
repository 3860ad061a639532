#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pam_probe
short_description: Ask the node's real Linux-PAM who would get in, without logging anyone in or changing anything
version_added: "0.2.0"
description:
  - Runs PAM transactions (C(pam_acct_mgmt), C(pam_authenticate), C(pam_open_session)) through the node's own
    C(libpam.so.0) and PAM modules, for the given users and services, and returns each answer (PAM return code,
    messages, PAM environment, the modules' syslog lines).
  - Everything happens in a private mount namespace of a child process. There the live PAM tree or a staged tree
    (O(tree)) is mounted over C(/etc/pam.d), C(/etc/security) and the vendor directory, probe users (O(probe_users))
    are added to copies of C(/etc/passwd), C(/etc/group) and C(/etc/shadow), every mount is read-only except for
    throw-away overlays on C(/var/log), C(/home), C(/var/tmp), and the syslog socket is replaced so that probes do not
    reach the node's log. Nothing outside the namespace changes; no user is created.
  - Each transaction runs in its own process with a deadline (O(timeout)); a hung module gives that query
    RV(results[].status=timeout) instead of hanging the play.
  - O(allow) and O(deny) state who must get in and who must be refused; the module fails, listing every unmet
    expectation, when one is not met (for example the rollout's lockout pre-flight, where root, the connecting user
    and an administrator must pass and an ordinary user without a job must be denied).
  - O(compare_tree) evaluates the same queries a second time on another tree and reports every answer that differs,
    except the O(allowed_changes).
  - Needs no package (ctypes on the node's libpam, no pamtester). Needs root and Linux mount namespaces.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
options:
  services:
    description: PAM services to ask (file names in C(/etc/pam.d) or the vendor directory).
    type: list
    elements: str
    default: [sshd]
  ops:
    description: PAM operations to run, each in its own transaction.
    type: list
    elements: str
    choices: [account, auth, open_session, setcred]
    default: [account]
  users:
    description: Users to ask about (besides those in O(allow) and O(deny)).
    type: list
    elements: str
    default: []
  allow:
    description: Users that must get PAM_SUCCESS for every service and op. The module fails otherwise.
    type: list
    elements: str
    default: []
  deny:
    description: Users that must be refused (any answer but PAM_SUCCESS, and no timeout) for every service and op.
    type: list
    elements: str
    default: []
  password:
    description: Answer to password prompts (needed for O(ops=auth)); without it prompts fail with PAM_CONV_ERR.
    type: str
  rhost:
    description: Remote host set as PAM_RHOST (what pam_access sees as the origin of an ssh login).
    type: str
    default: 192.0.2.1
  tty:
    description: PAM_TTY (sshd sets C(ssh)).
    type: str
    default: ssh
  ruser:
    description: PAM_RUSER, when set.
    type: str
  probe_users:
    description:
      - Users that exist only inside the probe's namespace, for example "an ordinary local user without a job".
        A name that already exists keeps its entry; only its password and extra groups change.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: User name.
        type: str
        required: true
      uid:
        description: UID (default 60000 and up).
        type: int
      gid:
        description: Primary GID (default the UID; a group of the user's name is created).
        type: int
      groups:
        description: Supplementary groups (created in the namespace when missing).
        type: list
        elements: str
        default: []
      password:
        description: Password (hashed with SHA-512 in the namespace's shadow copy).
        type: str
      home:
        description: Home directory.
        type: str
      shell:
        description: Login shell.
        type: str
        default: /bin/bash
  tree:
    description:
      - A staged tree laid out like a root (C(etc/pam.d), C(etc/security), C(usr/lib/pam.d), ...) used instead of the
        live files. Without it the node's live PAM configuration is probed.
    type: path
  compare_tree:
    description: A second tree; the same queries run on it and every changed answer is reported in RV(violations).
    type: path
  allowed_changes:
    description:
      - Answers allowed to differ between the first evaluation and O(compare_tree). Each item matches on any of
        C(service), C(user), C(op) (omitted = any) and says what the new answer may be with C(to)
        (V(deny), V(allow) or V(any)).
    type: list
    elements: dict
    default: []
  root:
    description: Evaluate inside this OS image root (chroot in the namespace; the image's libpam, modules and python3).
    type: path
  timeout:
    description: Seconds each transaction may take before it is killed and reported as C(timeout).
    type: float
    default: 10.0
  fail_on_violation:
    description: Fail when O(allow), O(deny) or O(compare_tree) find a problem (V(false) only reports it).
    type: bool
    default: true
  remove:
    description:
      - A scratch directory (for example the one holding O(tree)) to remove when the probe is done, whatever its
        outcome; saves the caller a task. Only a directory whose name ends in C(.slurm-adopt-health) is removed.
    type: path
    version_added: "0.3.0"
notes:
  - PAM modules run for real inside the namespace. Modules with effects outside the file system can still act
    (C(pam_exec) runs its program, a real C(pam_slurm_adopt) may move the probe process into a job's cgroup, which ends
    with it). The D-Bus system socket and the nscd socket are hidden, so C(pam_systemd) creates no logind session and
    NSS answers come from the namespace's files.
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
seealso:
  - module: hpc.slurm_adopt.pam_stack_info
  - module: hpc.slurm_adopt.pam_adopt
'''

EXAMPLES = r'''
---
- name: Lockout pre-flight on the staged tree, with the node's real modules
  hpc.slurm_adopt.pam_probe:
    tree: /var/tmp/slurm-adopt-preflight/root
    services: [sshd]
    allow: [root, "{{ connecting_user }}", hpcadmin]
    deny: [pe-nojob]
    probe_users:
      - name: pe-nojob
        uid: 64001

- name: What would change for everyone if the staged tree went live
  hpc.slurm_adopt.pam_probe:
    compare_tree: /var/tmp/slurm-adopt-preflight/root
    services: [sshd, su, sudo, login, crond]
    users: [root, "{{ connecting_user }}", pe-nojob]
    probe_users: [{name: pe-nojob, uid: 64001}]
    allowed_changes:
      - {service: sshd, user: pe-nojob, op: account, to: deny}
'''

RETURN = r'''
results:
  description: One entry per query (service x op x user), as the evaluator returns it.
  returned: always
  type: list
  elements: dict
  contains:
    query:
      description: The query (service, user, ops, rhost, ...).
      type: dict
    status:
      description: C(ok), C(timeout) or C(error).
      type: str
    rc_name:
      description: PAM return code name of the last operation run (C(PAM_SUCCESS), C(PAM_PERM_DENIED), ...).
      type: str
      sample: PAM_PERM_DENIED
    rc:
      description: PAM return code (null on timeout).
      type: int
    steps:
      description: Each PAM call made, with its return code.
      type: list
      elements: dict
    messages:
      description: Conversation messages (PAM_ERROR_MSG, PAM_TEXT_INFO, prompts).
      type: list
      elements: dict
    env:
      description: PAM environment after the operations.
      type: dict
    log:
      description: The modules' syslog lines.
      type: list
      elements: str
    elapsed:
      description: Seconds.
      type: float
  sample:
    - query: {service: sshd, user: root, ops: [account], rhost: 192.0.2.1}
      status: ok
      rc: 0
      rc_name: PAM_SUCCESS
compare_results:
  description: The results on O(compare_tree).
  returned: when compare_tree is set
  type: list
  elements: dict
failures:
  description: Unmet O(allow)/O(deny) expectations, one readable line each.
  returned: always
  type: list
  elements: str
  sample: ["sshd account hpcadmin: PAM_PERM_DENIED, must be allowed"]
violations:
  description: Answers that differ on O(compare_tree) and are not in O(allowed_changes).
  returned: always
  type: list
  elements: str
  sample: ["su account pe-nojob: PAM_SUCCESS -> PAM_PERM_DENIED"]
libpam:
  description: The Linux-PAM library that answered.
  returned: always
  type: str
  sample: /usr/lib/x86_64-linux-gnu/libpam.so.0.85.1
'''

import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_eval import (
    EvalError, evaluate, compare, expectation_failures, allowed_by,
)


def argument_spec():
    return dict(
        services=dict(type='list', elements='str', default=['sshd']),
        ops=dict(type='list', elements='str', default=['account'],
                 choices=['account', 'auth', 'open_session', 'setcred']),
        users=dict(type='list', elements='str', default=[]),
        allow=dict(type='list', elements='str', default=[]),
        deny=dict(type='list', elements='str', default=[]),
        password=dict(type='str', no_log=True),
        rhost=dict(type='str', default='192.0.2.1'),
        tty=dict(type='str', default='ssh'),
        ruser=dict(type='str'),
        probe_users=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            uid=dict(type='int'),
            gid=dict(type='int'),
            groups=dict(type='list', elements='str', default=[]),
            password=dict(type='str', no_log=True),
            home=dict(type='str'),
            shell=dict(type='str', default='/bin/bash'),
        )),
        tree=dict(type='path'),
        compare_tree=dict(type='path'),
        allowed_changes=dict(type='list', elements='dict', default=[]),
        root=dict(type='path'),
        timeout=dict(type='float', default=10.0),
        fail_on_violation=dict(type='bool', default=True),
        remove=dict(type='path'),
    )


def build_queries(params):
    users = []
    for user in params['allow'] + params['deny'] + params['users']:
        if user not in users:
            users.append(user)
    queries = []
    for service in params['services']:
        for op in params['ops']:
            for user in users:
                query = {'service': service, 'user': user, 'op': op, 'rhost': params['rhost'],
                         'tty': params['tty'], 'timeout': params['timeout']}
                if params['ruser']:
                    query['ruser'] = params['ruser']
                if params['password'] is not None:
                    query['password'] = params['password']
                queries.append(query)
    return queries


def check_params(params):
    for rule in params['allowed_changes']:
        unknown = set(rule) - set(['service', 'user', 'op', 'to'])
        if unknown:
            return 'allowed_changes: unknown keys %s' % ', '.join(sorted(unknown))
        if rule.get('to', 'any') not in ('deny', 'allow', 'any'):
            return 'allowed_changes: to must be deny, allow or any'
    if not (params['allow'] or params['deny'] or params['users']):
        return 'give at least one user in allow, deny or users'
    if params['timeout'] <= 0:
        return 'timeout must be positive'
    return None


def run(module):
    params = module.params
    err = check_params(params)
    if err:
        module.fail_json(msg=err)
    probe_users = []
    for user in params['probe_users']:
        probe_users.append(dict((k, v) for k, v in user.items() if v is not None))
    queries = build_queries(params)
    try:
        first = evaluate(queries, tree=params['tree'], root=params['root'], probe_users=probe_users,
                         timeout=params['timeout'])
        second = None
        if params['compare_tree']:
            second = evaluate(queries, tree=params['compare_tree'], root=params['root'], probe_users=probe_users,
                              timeout=params['timeout'])
    except (EvalError, OSError) as exc:
        module.fail_json(msg='the PAM probe could not run: %s' % exc)
    result = dict(changed=False, results=first['results'], libpam=first.get('libpam'),
                  failures=expectation_failures(first['results'], params['allow'], params['deny']),
                  violations=[])
    for warning in first.get('warnings') or []:
        module.warn(warning)
    if second is not None:
        result['compare_results'] = second['results']
        result['violations'] = compare(first['results'], second['results'],
                                       allowed=allowed_by(params['allowed_changes']))
        result['failures'].extend('%s (on compare_tree)' % f for f in expectation_failures(
            second['results'], params['allow'], params['deny']))
    if params['fail_on_violation'] and (result['failures'] or result['violations']):
        module.fail_json(msg='PAM probe: %s' % '; '.join(result['failures'] + result['violations']), **result)
    module.exit_json(**result)


def remove_scratch(path):
    """Remove the caller's scratch directory (only one of ours, by its suffix)."""
    if path and path.rstrip('/').endswith('.slurm-adopt-health') and os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module)
    finally:
        # exit_json and fail_json end the process with SystemExit: this still runs
        remove_scratch(module.params['remove'])


if __name__ == '__main__':
    main()
