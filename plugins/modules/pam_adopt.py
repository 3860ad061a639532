#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pam_adopt
short_description: Put pam_slurm_adopt last in a service's PAM account stack, safely
version_added: "0.1.0"
description:
  - Adds the rule that runs the Python C(pam_slurm_adopt) (through C(pam_python.so) or C(pam_exec.so))
    as the last rule of the effective account stack of each service in O(services), in the service's
    own file after its account includes.
  - Works on a real Linux-PAM parser that resolves C(@include), C(include) and C(substack), understands
    C(-type) lines, bracketed controls, backslash continuations and C(#) comments.
  - Disables (comments out with a C(#hpc.slurm_adopt:<reason>#) prefix) every rule that could end the
    account stack successfully before the adopt rule for an ordinary user (for example
    C(account sufficient pam_localuser.so) in RHEL's password-auth), in every included file, and every
    C(pam_systemd.so) rule in every file reachable from the service.
  - Adds an administrator bypass, either C(pam_access) after a C(sufficient) adopt rule (with a marked
    block in the access file) or C(pam_listfile) before a C(required) adopt rule.
  - Computes every file first, re-parses and validates the result (adopt last, no short-circuit left, no
    unparsable line, modules present), then writes each file through a temporary file, fsync and rename,
    and restores the files already written if a later write fails.
  - Keeps the original of every file it changes under O(state_dir); O(state=absent) restores them byte for
    byte when the file is still what this module wrote, and otherwise removes only the marked lines.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
options:
  state:
    description: V(present) installs the rules, V(absent) restores the original files.
    type: str
    choices: [present, absent]
    default: present
  services:
    description: PAM services (files in O(pamd_dir)) whose account stack gets the adopt rule.
    type: list
    elements: str
    default: [sshd]
  interface:
    description:
      - How PAM runs the Python module. V(auto) picks V(pam_python) when C(pam_python.so) is found in
        O(module_dirs) on the node, else V(pam_exec) (the choice is returned in RV(interface)).
      - V(pam_python) gives
        C(account <control> pam_python.so <script> <options>); V(pam_exec) gives
        C(account <control> pam_exec.so <pam_exec_args> <python> <script> pam-exec <options>)
        (pam_exec cannot return PAM_IGNORE nor set the session environment, see docs/differences.md).
    type: str
    choices: [auto, pam_python, pam_exec]
    default: auto
  control:
    description:
      - Control flag of the adopt rule. Defaults to V(sufficient) when O(admin_access=pam_access)
        (the pam_access rule after it then decides for users without a job), else V(required).
      - V(required) with O(admin_access=pam_access) is refused (pam_access would never be reached for a denied
        administrator); V(sufficient) without O(admin_access=pam_access) is refused (a denial would be ignored
        and everyone let in).
    type: str
    choices: [required, sufficient]
  dash:
    description: Write the rule as C(-account) so that a missing PAM module (.so) is silently skipped.
    type: bool
    default: false
  script:
    description: Path of C(pam_slurm_adopt.py) on the node (installed by role P(hpc.slurm_adopt.adopt_module#role)).
    type: path
    default: /usr/lib/slurm-adopt/pam_slurm_adopt.py
  python:
    description: Python interpreter used with O(interface=pam_exec).
    type: path
    default: /usr/bin/python3
  pam_exec_args:
    description: Options of C(pam_exec.so) itself (before the program). C(stdout) shows the module's messages to the user.
    type: list
    elements: str
    default: [stdout, quiet]
  pam_exec_env:
    description: Environment for the pam_exec program, given through C(/usr/bin/env NAME=VALUE) (for example C(SLURM_CONF)).
    type: dict
    default: {}
  options:
    description:
      - pam_slurm_adopt options (docs/options.md), rendered as C(name=value) in the given order.
      - Known names are C(action_no_jobs), C(action_unknown), C(action_adopt_failure), C(action_generic_failure),
        C(disable_x11), C(log_level), C(nodename), C(service), C(join_container), C(single_job_skip_rpc), C(ignore_root).
    type: dict
    default:
      action_adopt_failure: deny
      action_generic_failure: deny
  admin_access:
    description:
      - V(pam_access) (the upstream recommendation) writes C(account sufficient <adopt>) followed by
        C(account required pam_access.so) and a marked block of O(access_rules) in O(access_file).
      - V(pam_listfile) writes C(account sufficient pam_listfile.so item=user sense=allow onerr=fail file=<listfile_path>)
        before a C(required) adopt rule and writes O(listfile_users) to O(listfile_path).
      - V(none) adds no bypass (root is always let through by pam_slurm_adopt itself).
    type: str
    choices: [pam_access, pam_listfile, none]
    default: pam_access
  access_file:
    description: pam_access configuration file. Anything other than C(/etc/security/access.conf) is passed as C(accessfile=).
    type: path
    default: /etc/security/access.conf
  access_rules:
    description: pam_access rules (C(+|-:users:origins)) written in a marked block at the end of O(access_file).
    type: list
    elements: str
    default: ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
  listfile_path:
    description: File of user names allowed in without a job (O(admin_access=pam_listfile)).
    type: path
    default: /etc/security/slurm-adopt-allowed-users
  listfile_users:
    description: User names written to O(listfile_path), one per line.
    type: list
    elements: str
    default: [root]
  ensure_access_for:
    description:
      - Lockout guard. Users that must still be able to log in without a job (typically the Ansible remote user).
        The module fails, writing nothing, if the admin bypass would not let one of them in.
      - Group membership is looked up on the node.
    type: list
    elements: str
    default: [root]
  short_circuits:
    description:
      - What to do with rules that can end the account stack successfully before the adopt rule for ordinary users.
        V(disable) comments them out (reported in RV(disabled)); V(warn) only reports them; V(fail) refuses.
      - Rules that only match system accounts (C(pam_succeed_if uid < 1000), C(pam_usertype issystem)),
        administrator bypasses and C(new_authtok_reqd=done) are kept and reported in RV(kept).
    type: str
    choices: [disable, warn, fail]
    default: disable
  pam_systemd:
    description: V(disable) comments out every C(pam_systemd.so) rule (all types) in every file reachable from the services.
    type: str
    choices: [disable, keep]
    default: disable
  pam_systemd_services:
    description:
      - More PAM services (or files in O(pamd_dir), such as C(system-auth)) whose reachable files get pam_systemd
        disabled too, without an adopt rule. Upstream asks for pam_systemd to be off in everything sshd or
        system-auth includes.
    type: list
    elements: str
    default: []
  replace_other_adopt_rules:
    description: Disable other rules that already run a pam_slurm_adopt (C module or a hand-written line) in the account stack; V(false) fails instead.
    type: bool
    default: true
  require_modules:
    description: Refuse to write a rule whose PAM module, interpreter or script is missing on the node (a warning in check mode).
    type: bool
    default: true
  module_dirs:
    description: Directories (globs) searched for PAM modules. Empty means the usual distribution directories.
    type: list
    elements: path
    default: []
  root:
    description: Act on the tree below this directory instead of C(/) (chroots, images, tests).
    type: path
    default: /
  pamd_dir:
    description: PAM configuration directory, as seen on the node.
    type: path
    default: /etc/pam.d
  vendor_dir:
    description: Vendor PAM directory searched after O(pamd_dir) (Linux-PAM C(--enable-vendordir)).
    type: path
    default: /usr/lib/pam.d
  state_dir:
    description: Where originals and the manifest of written files are kept, as seen on the node.
    type: path
    default: /var/lib/slurm-adopt/pam
notes:
  - Lines this module adds end with C(# hpc.slurm_adopt:<tag>); lines it disables start with C(#hpc.slurm_adopt:<reason>#).
    Linux-PAM treats everything after C(#) as a comment.
  - Disabling a rule in a shared file (common-session, password-auth) affects every service that includes it.
  - On Debian, role P(hpc.slurm_adopt.adopt_pam#role) also installs a pam-auth-update profile so that pam_systemd
    stays out of common-session; on RHEL with authselect it uses a custom authselect profile.
seealso:
  - module: hpc.slurm_adopt.pam_stack_info
attributes:
  check_mode:
    support: full
    description: Computes and validates everything and reports the diff, writes nothing.
  diff_mode:
    support: full
    description: One before/after diff per changed file.
'''

EXAMPLES = r'''
---
- name: Adopt ssh sessions, admins in wheel may log in without a job
  hpc.slurm_adopt.pam_adopt:
    services: [sshd]
    interface: pam_python
    admin_access: pam_access
    access_rules: ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
    ensure_access_for: [root, "{{ ansible_user_id }}"]

- name: pam_exec fallback with a listfile bypass
  hpc.slurm_adopt.pam_adopt:
    interface: pam_exec
    admin_access: pam_listfile
    listfile_users: [root, hpcadmin]
    options:
      action_adopt_failure: deny
      action_generic_failure: deny
      log_level: info

- name: Restore the original PAM files
  hpc.slurm_adopt.pam_adopt:
    state: absent
'''

RETURN = r'''
adopt_rule:
  description: The adopt rule as written (without the marker comment).
  returned: state=present
  type: str
  sample: account sufficient pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py action_adopt_failure=deny action_generic_failure=deny
files:
  description: Files written (or that would be written in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/pam.d/sshd, /etc/pam.d/common-session]
added:
  description: Lines added, with file and service.
  returned: state=present
  type: list
  elements: dict
disabled:
  description: >-
    Rules commented out, each with file, line, text, type, control, module, include_chain, service,
    classification (short_circuit, pam_systemd, other_adopt) and reason.
  returned: state=present
  type: list
  elements: dict
  sample:
    - file: /etc/pam.d/password-auth
      line: 14
      text: "account     sufficient                                   pam_localuser.so"
      classification: short_circuit
      reason: sufficient (success=done)
      service: sshd
kept:
  description: >-
    Rules that can end the account stack before adopt but were kept, with classification
    system_users, admin_bypass or expired_password (or short_circuit with short_circuits=warn).
  returned: state=present
  type: list
  elements: dict
interface:
  description: The interface used (V(auto) resolved).
  returned: state=present
  type: str
  sample: pam_python
restored:
  description: Files restored byte for byte from the stored originals.
  returned: always
  type: list
  elements: str
'''

import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hpc.slurm_adopt.plugins.module_utils.pam_edit import (
    PlanError, plan_present, plan_absent, commit, adopt_rule_words, module_exists,
)


def argument_spec():
    return dict(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        services=dict(type='list', elements='str', default=['sshd']),
        interface=dict(type='str', default='auto', choices=['auto', 'pam_python', 'pam_exec']),
        control=dict(type='str', choices=['required', 'sufficient']),
        dash=dict(type='bool', default=False),
        script=dict(type='path', default='/usr/lib/slurm-adopt/pam_slurm_adopt.py'),
        python=dict(type='path', default='/usr/bin/python3'),
        pam_exec_args=dict(type='list', elements='str', default=['stdout', 'quiet']),
        pam_exec_env=dict(type='dict', default={}),
        options=dict(type='dict', default={'action_adopt_failure': 'deny', 'action_generic_failure': 'deny'}),
        admin_access=dict(type='str', default='pam_access', choices=['pam_access', 'pam_listfile', 'none']),
        access_file=dict(type='path', default='/etc/security/access.conf'),
        access_rules=dict(type='list', elements='str', default=['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']),
        listfile_path=dict(type='path', default='/etc/security/slurm-adopt-allowed-users'),
        listfile_users=dict(type='list', elements='str', default=['root']),
        ensure_access_for=dict(type='list', elements='str', default=['root']),
        short_circuits=dict(type='str', default='disable', choices=['disable', 'warn', 'fail']),
        pam_systemd=dict(type='str', default='disable', choices=['disable', 'keep']),
        pam_systemd_services=dict(type='list', elements='str', default=[]),
        replace_other_adopt_rules=dict(type='bool', default=True),
        require_modules=dict(type='bool', default=True),
        module_dirs=dict(type='list', elements='path', default=[]),
        root=dict(type='path', default='/'),
        pamd_dir=dict(type='path', default='/etc/pam.d'),
        vendor_dir=dict(type='path', default='/usr/lib/pam.d'),
        state_dir=dict(type='path', default='/var/lib/slurm-adopt/pam'),
    )


def check_params(params):
    """Cross-parameter checks; returns an error message or None."""
    if not params['services']:
        return 'services must name at least one PAM service'
    for service in params['services'] + params['pam_systemd_services']:
        if not service or '/' in service or service.startswith('.'):
            return 'services: %r is not a PAM service name' % service
    for key in ('pamd_dir', 'state_dir', 'script', 'python', 'access_file', 'listfile_path'):
        if not params[key].startswith('/'):
            return '%s must be an absolute path, got %r' % (key, params[key])
    if params['interface'] == 'auto':
        found = module_exists(params['root'], 'pam_python.so', params['module_dirs'])
        params['interface'] = 'pam_python' if found else 'pam_exec'
    if params['control'] is None:
        params['control'] = 'sufficient' if params['admin_access'] == 'pam_access' else 'required'
    if params['admin_access'] == 'pam_access' and params['control'] != 'sufficient':
        return ('control=required with admin_access=pam_access would deny administrators before pam_access '
                'is reached; use control=sufficient (the upstream layout) or admin_access=pam_listfile')
    if params['admin_access'] != 'pam_access' and params['control'] == 'sufficient':
        return ('control=sufficient without admin_access=pam_access lets every user in when pam_slurm_adopt '
                'denies (a failing sufficient rule is ignored); use control=required')
    if params['admin_access'] == 'pam_access' and not params['access_rules']:
        return 'admin_access=pam_access needs access_rules'
    if params['admin_access'] == 'pam_listfile' and not params['listfile_users']:
        return 'admin_access=pam_listfile needs listfile_users'
    return None


def _diffs(plan, root):
    out = []
    for path in plan.changed_paths():
        out.append({
            'before_header': path, 'after_header': path,
            'before': plan.old.get(path) or '', 'after': plan.new.get(path) or '',
        })
    return out


def run(module):
    params = dict(module.params)
    params['check_mode'] = module.check_mode
    err = check_params(params)
    if err:
        module.fail_json(msg=err)
    try:
        if params['state'] == 'present':
            plan = plan_present(params)
        else:
            plan = plan_absent(params)
    except PlanError as exc:
        module.fail_json(msg='nothing was changed: %s' % exc)
    except (IOError, OSError) as exc:
        module.fail_json(msg='nothing was changed: cannot read PAM files: %s' % exc)
    changed_paths = plan.changed_paths()
    result = dict(changed=bool(changed_paths), files=changed_paths, restored=plan.restored,
                  warnings=list(plan.warnings))
    if params['state'] == 'present':
        mod, args = adopt_rule_words(params)
        result['interface'] = params['interface']
        result['adopt_rule'] = ' '.join([('-' if params['dash'] else '') + 'account', params['control'], mod] + args)
        result['added'] = plan.added
        result['disabled'] = plan.disabled
        result['kept'] = plan.kept
    if module._diff:
        result['diff'] = _diffs(plan, params['root'])
    if changed_paths and not module.check_mode:
        try:
            commit(params, plan, params['state'])
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json(msg='writing failed, files already written were restored: %s' % exc,
                             exception=traceback.format_exc(), **result)
    for warning in result.pop('warnings'):
        module.warn(warning)
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run(module)


if __name__ == '__main__':
    main()
