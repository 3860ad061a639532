#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: converged
short_description: Decide whether a compute node is already exactly as a full site.yml run would leave it
version_added: "0.3.0"
description:
  - The converged fast path of the collection's C(site.yml) (docs/fleet.md, "Scale").
  - With O(state=check) (read-only, the default) it compares the record that the last successful full run left on
    the node with this run's inputs (O(fingerprint), computed on the controller) and with the node as it is now,
    every file below O(paths) (owner, mode, sha256, symlink targets), the states of O(units), the package database,
    the host name, the Python, the OS release and the user Ansible connects as; nothing in O(must_be_absent) may
    exist; and the node's own drift check (O(check_argv)) must be green. RV(converged) is true only when all of
    that holds. It never changes anything.
  - With O(state=record) it writes that record (run as the last step of a successful full run). While something in
    O(must_be_absent) exists, nothing is recorded and an old record is removed.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
options:
  state:
    description: C(check) decides (read-only), C(record) writes the record.
    type: str
    choices: [check, record]
    default: check
  record:
    description: The record's path on the node.
    type: path
    required: true
  fingerprint:
    description: This run's inputs, hashed on the controller (collection files and version, the roles' settings,
      the connection). Empty means no fast path.
    type: str
    required: true
  paths:
    description: Files and directories (recursively; shell globs allowed) whose state is recorded and compared.
    type: list
    elements: path
    default: []
  exclude:
    description: Paths left out (an absolute path and everything below it), or names left out anywhere (a name
      without C(/), such as C(__pycache__)). The record itself is always left out.
    type: list
    elements: str
    default: []
  units:
    description: systemd units whose load, active and unit-file states are recorded and compared.
    type: list
    elements: str
    default: []
  must_be_absent:
    description: Paths whose existence means work is pending (for example a recorded slurmd restart).
    type: list
    elements: path
    default: []
  check_argv:
    description:
      - The node's drift check, read-only (C(check --json --no-metrics --only ...)); every check it runs must be C(ok).
        Only with O(state=check).
      - An empty first element means the Python this module runs with.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: O(state=check) is read-only anyway; O(state=record) reports what it would do and writes nothing.
  diff_mode:
    support: none
    description: The record is a file of the collection's own; no diff is shown.
notes:
  - Standard library only on the node (Python 3.6+).
'''

EXAMPLES = r'''
- name: Is this node converged (read-only)
  hpc.slurm_adopt.converged:
    record: /var/lib/slurm-adopt/converged.json
    fingerprint: "{{ my_fingerprint }}"
    paths: [/etc/pam.d, /etc/security, /usr/lib/slurm-adopt]
    exclude: [__pycache__]
    units: [systemd-logind.service]
    check_argv: [/usr/bin/python3, /usr/lib/slurm-adopt/slurm_adopt_check.py, check, --json, --no-metrics, --only, logind]
  register: fast

- name: Record the state after a successful full run
  hpc.slurm_adopt.converged:
    state: record
    record: /var/lib/slurm-adopt/converged.json
    fingerprint: "{{ my_fingerprint }}"
    paths: [/etc/pam.d, /etc/security, /usr/lib/slurm-adopt]
    exclude: [__pycache__]
    units: [systemd-logind.service]
'''

RETURN = r'''
converged:
  description: The node is exactly as the last successful full run with the same inputs left it, and green.
  returned: state is check
  type: bool
reason:
  description: Why (the first differences, the failed check, or what was recorded).
  returned: always
  type: str
differences:
  description: Every difference between the record and the node (state check).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._converged import decide, write_record


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['check', 'record'], default='check'),
            record=dict(type='path', required=True),
            fingerprint=dict(type='str', required=True),
            paths=dict(type='list', elements='path', default=[]),
            exclude=dict(type='list', elements='str', default=[]),
            units=dict(type='list', elements='str', default=[]),
            must_be_absent=dict(type='list', elements='path', default=[]),
            check_argv=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    exclude = list(params['exclude']) + [params['record']]

    def run(argv):
        return module.run_command(argv, check_rc=False)

    common = dict(fingerprint=params['fingerprint'], paths=params['paths'], run=run, exclude=exclude,
                  units=params['units'], must_be_absent=params['must_be_absent'])
    if params['state'] == 'check':
        try:
            converged, reason, diffs = decide(params['record'], check_argv=params['check_argv'], **common)
        except Exception as exc:  # pylint: disable=broad-except
            converged, reason, diffs = False, 'the decision failed: %s: %s' % (type(exc).__name__, exc), []
        module.exit_json(changed=False, converged=converged, reason=reason, differences=diffs)
    try:
        changed, reason = write_record(params['record'], dry_run=module.check_mode, **common)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot write the record %s: %s' % (params['record'], exc))
    module.exit_json(changed=changed, reason=reason, differences=[])


if __name__ == '__main__':
    main()
