#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: pam_adopt
short_description: Put pam_slurm_adopt last in a service's PAM account stack, without locking anyone out
version_added: "0.1.0"
description:
  - Adds the rule that runs the Python C(pam_slurm_adopt) (through C(pam_python.so), C(pam_exec.so) or the adoption
    service's C client C(pam_slurm_adopt_client.so)) as the
    last rule of the effective account stack of each service in O(services), in the service's own file, after
    its account lines, followed (or preceded) by the administrator bypass.
  - Never comments a rule out. A rule that could end the account stack before the adopt rule is handled so
    that every user keeps the path they had and then meets the adopt rule, or the module refuses and says what
    to do. In a shared file (RHEL C(password-auth), Debian and SUSE C(common-account)) such a rule is left
    alone and the service file's C(account include F) (or C(@include F)) becomes C(account substack F), so
    that a C(sufficient) success there ends only the substack. In the service file itself, its C(done) becomes
    a jump to the adopt block when every rule it skips is in that file.
  - Rules it must switch off (another pam_slurm_adopt, C(pam_systemd.so), C(pam_elogind.so)) are replaced by a
    neutral placeholder of the same type (C(<type> [default=ignore] pam_permit.so)), so that no jump changes its
    target; every jump of the services' stacks is checked to land where it did before.
  - The admin bypass is either C(pam_access) with a file of its own after a C(sufficient) adopt rule, or
    C(pam_listfile) before a C(required) adopt rule. Empty access rules and rules that do not end by denying
    everyone are refused.
  - Before anything is written, the computed files are run through the node's real libpam in a private mount
    namespace (O(lockout_guard)); the module refuses when an answer of a user in O(ensure_access_for) changes
    in any service that reads a changed file, or when an ordinary user without a job (a probe user that exists
    only in the namespace) would still get in through a kept bypass rule.
  - Files written by a generator (authselect, pam-auth-update, pam-config) are refused with the command to run
    (O(generated_files)); role P(hpc.slurm_adopt.adopt_pam#role) uses each generator's own mechanism first.
  - Writes each file through a temporary file and C(atomic_move) (keeps SELinux contexts), restores the files
    already written if a later write fails, and keeps the original of every file it changes under
    O(state_dir); O(state=absent) restores them byte for byte when the file is still what this module wrote
    and the stored original passes its checksum, and otherwise removes only the marked lines.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
extends_documentation_fragment:
  - hpc.slurm_adopt._pam_tree
options:
  state:
    description: V(present) installs the rules, V(absent) restores the original files.
    type: str
    choices: [present, absent]
    default: present
  services:
    description:
      - PAM services (files in O(pamd_dir)) whose account stack gets the adopt rule.
      - The adopt module acts only for the service named by its C(service) option (default C(sshd)); with
        another service in this list, set O(options.service=*) or the probe check refuses (the rule would let
        everyone in there).
    type: list
    elements: str
    default: [sshd]
  interface:
    description:
      - How PAM runs the Python module. V(auto) picks V(pam_python) when C(pam_python.so) is found in
        O(module_dirs) on the node, else V(service) when C(pam_slurm_adopt_client.so) is found there, else
        V(pam_exec) (the choice is returned in RV(interface)).
      - V(pam_python) gives
        C(account <control> pam_python.so <script> <options>); V(pam_exec) gives
        C(account <control> pam_exec.so <pam_exec_args> <python> <script> pam-exec <options>)
        (pam_exec cannot return PAM_IGNORE nor set the session environment, see docs/differences.md);
        V(service) gives C(account <control> pam_slurm_adopt_client.so <options>), the C client of the resident
        adoption service (docs/service.md), installed into the PAM module directory by role
        P(hpc.slurm_adopt.adopt_module#role) with C(adopt_module_interface=service).
    type: str
    choices: [auto, pam_python, pam_exec, service]
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
    description:
      - Write the rule as C(-account). Linux-PAM then does not log a missing module, but the rule stays and
        answers C(PAM_MODULE_UNKNOWN) (measured with the real libpam, docs/pam.md). With a V(sufficient) rule
        that answer is ignored and pam_access decides (nobody is adopted until the module is installed, a
        warning); with a V(required) rule it fails the stack for everyone, so a missing module is refused like
        without C(-).
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
    description: pam_slurm_adopt options (docs/options.md), rendered as C(name=value) after the script.
    type: dict
    default: {}
    suboptions:
      action_no_jobs:
        description: The user has no job on the node. V(ignore) lets the rest of the stack decide.
        type: str
        choices: [deny, ignore]
      action_unknown:
        description: Several jobs and the source job is unknown.
        type: str
        choices: [newest, allow, deny]
      action_adopt_failure:
        description: The chosen job could not adopt the session.
        type: str
        choices: [allow, deny]
        default: deny
      action_generic_failure:
        description: Something other than the user's jobs failed (no slurm.conf, silent stepds).
        type: str
        choices: [ignore, allow, deny]
        default: deny
      disable_x11:
        description: Do not set up Slurm's X11 forwarding.
        type: bool
      log_level:
        description: Syslog verbosity.
        type: str
        choices: [quiet, fatal, error, info, verbose, debug, debug2, debug3, debug4, debug5]
      nodename:
        description: The slurm.conf NodeName of this host when it differs from the short host name.
        type: str
      service:
        description: The PAM service the module acts for (C(*) = every service); it returns PAM_IGNORE for any other.
        type: str
      join_container:
        description: Join the job's namespaces after adoption.
        type: bool
      single_job_skip_rpc:
        description: V(false) asks the callerid RPC even for a single job.
        type: bool
      ignore_root:
        description: Kept for compatibility with the C module; root is always ignored.
        type: bool
  admin_access:
    description:
      - V(pam_access) (the upstream recommendation) writes C(account sufficient <adopt>) followed by
        C(account required pam_access.so accessfile=<access_file>), and writes O(access_rules) to O(access_file),
        a file of its own.
      - V(pam_listfile) writes C(account sufficient pam_listfile.so item=user sense=allow onerr=fail file=<listfile_path>)
        before a C(required) adopt rule and writes O(listfile_users) to O(listfile_path).
      - V(none) adds no bypass (root is always let through by pam_slurm_adopt itself).
    type: str
    choices: [pam_access, pam_listfile, none]
    default: pam_access
  access_file:
    description:
      - The pam_access file of the admin bypass (O(admin_access=pam_access)), owned entirely by this
        collection and passed as C(accessfile=). The shared C(/etc/security/access.conf) is refused, because
        every service with a pam_access rule reads it.
    type: path
    default: /etc/security/slurm-adopt-access.conf
  listfile_path:
    description: File of user names allowed in without a job (O(admin_access=pam_listfile)).
    type: path
    default: /etc/security/slurm-adopt-allowed-users
  access_rules:
    description:
      - pam_access rules (C(+|-:users:origins)), first match wins. They must end with C(-:ALL:ALL); an empty list,
        or one whose last rule does not deny everybody, is refused (pam_access would let every user in).
    type: list
    elements: str
    default: ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
  listfile_users:
    description: User names written to O(listfile_path), one per line.
    type: list
    elements: str
    default: [root]
  ensure_access_for:
    description:
      - Lockout guard. Users that must still be able to log in without a job (typically the Ansible remote user).
        The module fails, writing nothing, if one of them is not let in by the bypass (static check, groups read
        from the tree of O(root)), or if the real-libpam check (O(lockout_guard)) shows that an answer of one of
        them changes in any service that reads a changed file, or that O(services) would refuse them.
    type: list
    elements: str
    default: [root]
  lockout_guard:
    description:
      - V(libpam) runs every service whose stack changes, before and after, through the node's real libpam (a
        private mount namespace; needs root, also in check mode) for the O(ensure_access_for) users and for a
        probe user (an ordinary local user with no job and no admin group, at the site's first regular uid, see
        O(directory_uid_min)). The adopt rule is replaced there by an exact model of "this user has no job"
        built from real modules.
      - V(static) skips that check (only the access rules themselves are checked); use it only where the
        evaluator cannot run, it is reported as a warning.
    type: str
    choices: [libpam, static]
    default: libpam
  short_circuits:
    description:
      - What to do with rules that can end the account stack before the adopt rule.
      - V(transform) (default; V(disable) is its old name) makes everyone meet the adopt rule without changing
        anybody's path through the rest of the stack (include to substack, C(done) to a jump), or refuses with a
        message.
      - V(warn) keeps them and only reports them (they then let users in without a job, reported by the probe
        check as a warning); V(fail) refuses when a transformation would be needed.
      - Rules kept as bypasses (C(pam_succeed_if uid < N), C(pam_usertype issystem), C(pam_listfile),
        C(pam_access), C(pam_succeed_if user ingroup G) in the service file) are reported in RV(kept) and
        refused when they admit an ordinary user (probe check) or fail open (C(pam_listfile onerr=succeed)).
    type: str
    choices: [transform, warn, fail, disable]
    default: transform
  pam_systemd:
    description:
      - V(disable) replaces every C(pam_systemd.so) and C(pam_elogind.so) rule (all types) in every file reachable
        from the services by a neutral placeholder. V(keep) leaves them.
    type: str
    choices: [disable, keep]
    default: disable
  pam_systemd_services:
    description:
      - More PAM services (or files in O(pamd_dir), such as C(system-auth)) whose reachable files get pam_systemd
        and pam_elogind switched off too, without an adopt rule.
    type: list
    elements: str
    default: []
  generated_files:
    description:
      - A file that must change but is written by authselect, pam-auth-update or pam-config is refused with the
        command to run (V(refuse)); V(edit) edits it anyway, with a warning (the next run of the tool undoes it).
    type: str
    choices: [refuse, edit]
    default: refuse
  replace_other_adopt_rules:
    description:
      - Replace other rules that already run a pam_slurm_adopt (C module or a hand-written line) in the account stack
        by placeholders; V(false) fails instead.
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
notes:
  - Lines this module adds end with C(# hpc.slurm_adopt:<tag>); lines it replaces stay as comments starting with
    C(#hpc.slurm_adopt:<reason>#) right above their replacement. Linux-PAM treats everything after C(#) as a comment.
  - On Debian, role P(hpc.slurm_adopt.adopt_pam#role) also installs a pam-auth-update profile so that pam_systemd
    stays out of common-session; on RHEL with authselect it uses a custom authselect profile.
seealso:
  - module: hpc.slurm_adopt.pam_stack_info
attributes:
  check_mode:
    support: full
    description: Computes and validates everything, runs the real-libpam check (needs root) and reports the diff; writes nothing.
  diff_mode:
    support: full
    description: One before/after diff per changed file.
'''

EXAMPLES = r'''
---
- name: Find the user Ansible connects as (the lockout guard protects it)
  ansible.builtin.command: id -un
  become: false
  changed_when: false
  register: connecting_user

- name: Adopt ssh sessions, admins in wheel may log in without a job
  hpc.slurm_adopt.pam_adopt:
    services: [sshd]
    interface: pam_python
    admin_access: pam_access
    access_rules: ['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']
    ensure_access_for: [root, "{{ connecting_user.stdout }}"]
  become: true

- name: pam_exec fallback with a listfile bypass
  hpc.slurm_adopt.pam_adopt:
    interface: pam_exec
    admin_access: pam_listfile
    listfile_users: [root, hpcadmin]
    ensure_access_for: [root, hpcadmin]
    options:
      action_adopt_failure: deny
      action_generic_failure: deny
      log_level: info
  become: true

- name: The adoption service's C client (RHEL family; built by role adopt_module with adopt_module_interface=service)
  hpc.slurm_adopt.pam_adopt:
    interface: service
    admin_access: pam_access
    ensure_access_for: [root, "{{ connecting_user.stdout }}"]
    options:
      action_generic_failure: deny
  become: true

- name: Restore the original PAM files
  hpc.slurm_adopt.pam_adopt:
    state: absent
  become: true
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
  sample: [/etc/pam.d/sshd, /etc/security/slurm-adopt-access.conf]
added:
  description: Lines added, with file and service.
  returned: state=present
  type: list
  elements: dict
disabled:
  description: >-
    Rules replaced by a neutral placeholder, each with file, line, text, type, control, module, service,
    classification (pam_systemd for pam_systemd and pam_elogind, other_adopt) and reason.
  returned: state=present
  type: list
  elements: dict
transformed:
  description: >-
    Rules rewritten so that everyone meets the adopt rule on their old path: includes turned into substacks
    (transformation substack, with the rules in the included file that made it necessary), C(done) turned into a
    jump to the adopt block (transformation jump) and jump counts kept on their target (jump_count).
  returned: state=present
  type: list
  elements: dict
  sample:
    - file: /etc/pam.d/sshd
      line: 6
      text: "account    include      password-auth"
      transformation: substack
      reason: "can end the stack before pam_slurm_adopt: /etc/pam.d/password-auth:14 (sufficient (success=done, new_authtok_reqd=done))"
      service: sshd
kept:
  description: >-
    Rules of the service file that can end the account stack before adopt and were kept, with classification
    system_users or admin_bypass (all of them with short_circuits=warn); they passed the probe check.
  returned: state=present
  type: list
  elements: dict
generated:
  description: Files written by a generator that this run had to change (only with generated_files=edit), as [path, tool].
  returned: state=present
  type: list
  elements: list
copied:
  description: Vendor files copied to pamd_dir to be edited there, as [vendor path, copy].
  returned: state=present
  type: list
  elements: list
guard:
  description: >-
    What the real-libpam check did: mode (libpam or static), checked (service and type pairs), probe (name, uid
    and why that uid), problems, let_in.
  returned: state=present
  type: dict
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
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._pam_edit import (
    ADOPT_OPTION_NAMES, CLIENT_MODULE, PlanError, plan_present, plan_absent, commit, adopt_rule_words, module_exists,
    atomic_write,
)


OPTION_SPEC = dict(
    action_no_jobs=dict(type='str', choices=['deny', 'ignore']),
    action_unknown=dict(type='str', choices=['newest', 'allow', 'deny']),
    action_adopt_failure=dict(type='str', choices=['allow', 'deny'], default='deny'),
    action_generic_failure=dict(type='str', choices=['ignore', 'allow', 'deny'], default='deny'),
    disable_x11=dict(type='bool'),
    log_level=dict(type='str', choices=['quiet', 'fatal', 'error', 'info', 'verbose', 'debug', 'debug2', 'debug3',
                                        'debug4', 'debug5']),
    nodename=dict(type='str'),
    service=dict(type='str'),
    join_container=dict(type='bool'),
    single_job_skip_rpc=dict(type='bool'),
    ignore_root=dict(type='bool'),
)


def argument_spec():
    return dict(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        services=dict(type='list', elements='str', default=['sshd']),
        interface=dict(type='str', default='auto', choices=['auto', 'pam_python', 'pam_exec', 'service']),
        control=dict(type='str', choices=['required', 'sufficient']),
        dash=dict(type='bool', default=False),
        script=dict(type='path', default='/usr/lib/slurm-adopt/pam_slurm_adopt.py'),
        python=dict(type='path', default='/usr/bin/python3'),
        pam_exec_args=dict(type='list', elements='str', default=['stdout', 'quiet']),
        pam_exec_env=dict(type='dict', default={}),
        options=dict(type='dict', default={}, options=OPTION_SPEC),
        admin_access=dict(type='str', default='pam_access', choices=['pam_access', 'pam_listfile', 'none']),
        access_file=dict(type='path', default='/etc/security/slurm-adopt-access.conf'),
        access_rules=dict(type='list', elements='str', default=['+:root:ALL', '+:wheel:ALL', '-:ALL:ALL']),
        listfile_path=dict(type='path', default='/etc/security/slurm-adopt-allowed-users'),
        listfile_users=dict(type='list', elements='str', default=['root']),
        ensure_access_for=dict(type='list', elements='str', default=['root']),
        lockout_guard=dict(type='str', default='libpam', choices=['libpam', 'static']),
        directory_uid_min=dict(type='int'),
        short_circuits=dict(type='str', default='transform', choices=['transform', 'warn', 'fail', 'disable']),
        pam_systemd=dict(type='str', default='disable', choices=['disable', 'keep']),
        pam_systemd_services=dict(type='list', elements='str', default=[]),
        generated_files=dict(type='str', default='refuse', choices=['refuse', 'edit']),
        replace_other_adopt_rules=dict(type='bool', default=True),
        require_modules=dict(type='bool', default=True),
        module_dirs=dict(type='list', elements='path', default=[]),
        root=dict(type='path', default='/'),
        pamd_dir=dict(type='path', default='/etc/pam.d'),
        vendor_dir=dict(type='path', default='/usr/lib/pam.d'),
        state_dir=dict(type='path', default='/var/lib/slurm-adopt/pam'),
    )


def render_options(options):
    """The options dict (suboptions, None = unset) as name -> value strings,
    in the order of ADOPT_OPTION_NAMES."""
    out = {}
    options = options or {}
    for name in ADOPT_OPTION_NAMES:
        # absent (a direct caller): the suboption's default; None: unset
        value = options[name] if name in options else OPTION_SPEC[name].get('default')
        if value is None:
            continue
        if isinstance(value, bool):
            if name == 'join_container':
                value = 'true' if value else 'false'
            else:
                value = '1' if value else '0'
        out[name] = value
    return out


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
    if params.get('short_circuits') == 'disable':
        params['short_circuits'] = 'transform'
    if params.get('options') is None:
        params['options'] = {}
    unknown = [k for k in params['options'] if k not in ADOPT_OPTION_NAMES]
    if unknown:
        return 'unknown pam_slurm_adopt option %r (known: %s)' % (unknown[0], ', '.join(ADOPT_OPTION_NAMES))
    params['options'] = render_options(params['options'])
    if params['interface'] == 'auto':
        if module_exists(params['root'], 'pam_python.so', params['module_dirs']):
            params['interface'] = 'pam_python'
        elif module_exists(params['root'], CLIENT_MODULE, params['module_dirs']):
            params['interface'] = 'service'
        else:
            params['interface'] = 'pam_exec'
    if params['control'] is None:
        params['control'] = 'sufficient' if params['admin_access'] == 'pam_access' else 'required'
    if params['admin_access'] == 'pam_access' and params['control'] != 'sufficient':
        return ('control=required with admin_access=pam_access would deny administrators before pam_access '
                'is reached; use control=sufficient (the upstream layout) or admin_access=pam_listfile')
    if params['admin_access'] != 'pam_access' and params['control'] == 'sufficient':
        return ('control=sufficient without admin_access=pam_access lets every user in when pam_slurm_adopt '
                'denies (a failing sufficient rule is ignored); use control=required')
    if params['admin_access'] == 'pam_listfile' and not params['listfile_users']:
        return 'admin_access=pam_listfile needs listfile_users'
    return None


def module_writer(module):
    """The writer commit() uses: atomic_write with AnsibleModule.atomic_move
    (which keeps the SELinux context, mode and owner of the file it
    replaces)."""
    def write(host_path, content, template_stat=None):
        atomic_write(host_path, content, template_stat,
                     move=lambda src, dst: module.atomic_move(src, dst, unsafe_writes=False))
    return write


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
        result['transformed'] = plan.transformed
        result['kept'] = plan.kept
        result['generated'] = [list(g) for g in plan.generated]
        result['copied'] = [list(c) for c in plan.copied]
        result['guard'] = plan.guard
    if module._diff:
        result['diff'] = _diffs(plan, params['root'])
    if changed_paths and not module.check_mode:
        try:
            commit(params, plan, params['state'], writer=module_writer(module))
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
