#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: slurm_conf
short_description: Set keys and merge list items in slurm.conf, keeping everything else
version_added: "0.1.0"
description:
  - Edits global settings of a C(slurm.conf)-format file (slurm.conf, cgroup.conf, ...)
    the way an administrator would by hand. Only the value concerned changes, in the
    line and the file (main or included) that holds the definition Slurm uses.
  - Comments, blank lines, line order, line continuations, the spelling of keys
    and every other pair of a line are kept. Keys are matched case-insensitively.
  - C(Include) lines are followed, with relative names (looked up next to the
    including file), glob patterns and the C(%c) (ClusterName) modifier.
  - C(NodeName), C(PartitionName), C(FrontendName), C(NodeSet) and C(DownNodes)
    lines are never edited.
  - Keys that are not defined anywhere are appended to the main file O(path).
  - Files are written atomically (temporary file in the same directory, then
    rename); their mode, owner and group are kept.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
options:
  path:
    description:
      - The main configuration file.
    type: path
    default: /etc/slurm/slurm.conf
  settings:
    description:
      - Keys and the value each must have.
      - With O(state=absent), every definition of these keys is removed (the
        values are ignored).
    type: dict
    default: {}
  merge:
    description:
      - Keys whose value is a comma-separated list (C(PrologFlags), C(TaskPlugin),
        C(SlurmctldParameters), ...), each with the list of items that must be in it.
      - Items are compared case-insensitively, and an item without a C(type/)
        prefix matches one with it (C(cgroup) is C(task/cgroup)), as Slurm does
        for C(TaskPlugin).
      - Missing items are appended; existing items, their order and spelling are kept,
        and nothing is ever duplicated.
      - With O(state=absent), the items are removed from the lists (a key left
        empty is removed).
    type: dict
    default: {}
  state:
    description:
      - V(present) sets O(settings) and adds O(merge) items, V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description:
      - Keep a time-stamped copy of every file before it is changed.
    type: bool
    default: false
  follow_includes:
    description:
      - Read C(Include) files and edit a key in the included file that defines it.
      - When V(false), only O(path) is read and edited.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
notes:
  - A key defined more than once is edited where Slurm takes it from (its last
    definition); a warning says so.
  - The module does not restart or reconfigure Slurm; see the
    P(hpc.slurm_adopt.adopt_slurm_conf#role) role for that.
seealso:
  - module: hpc.slurm_adopt.slurm_config_info
"""

EXAMPLES = r"""
---
- name: Prerequisites of pam_slurm_adopt
  hpc.slurm_adopt.slurm_conf:
    path: /etc/slurm/slurm.conf
    settings:
      ProctrackType: proctrack/cgroup
    merge:
      PrologFlags: [Contain]
      TaskPlugin: [task/cgroup]
    backup: true
  register: slurm_conf_result

- name: Remove a flag again
  hpc.slurm_adopt.slurm_conf:
    merge:
      PrologFlags: [X11]
    state: absent
"""

RETURN = r"""
changed_files:
  description: The files that were (or, in check mode, would be) changed.
  returned: always
  type: list
  elements: str
  sample: [/etc/slurm/slurm.conf]
files:
  description: Every file read (the main file first, then included files in reading order).
  returned: always
  type: list
  elements: str
  sample: [/etc/slurm/slurm.conf, /etc/slurm/slurm.conf.d/local.conf]
edits:
  description:
    - Per key of O(settings) and O(merge), as spelled in the task, what happened.
    - C(action) is one of C(unchanged), C(changed), C(added), C(removed).
    - C(file) is the file that holds (or received) the definition.
  returned: always
  type: dict
  sample:
    PrologFlags: {before: "Alloc,X11", after: "Alloc,X11,Contain", file: /etc/slurm/slurm.conf, action: changed}
changed_keys:
  description: The keys of RV(edits) whose action is not C(unchanged).
  returned: always
  type: list
  elements: str
  sample: [PrologFlags]
backup_files:
  description: Backup copy per changed file, when O(backup=true).
  returned: when backup is true and a file changed
  type: dict
  sample: {/etc/slurm/slurm.conf: /etc/slurm/slurm.conf.12345.2026-11-26@12:00:00~}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible_collections.hpc.slurm_adopt.plugins.module_utils._slurm_conf import (
    SlurmConf, SlurmConfError)


def write_atomic(module, path, text):
    """Write text to path through a temporary file in the same directory,
    keeping mode and ownership, then rename it over path."""
    info = os.stat(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(to_bytes(text, errors="surrogate_or_strict"))
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_path, info.st_mode & 0o7777)
        try:
            os.chown(tmp_path, info.st_uid, info.st_gid)
        except OSError:
            pass            # not root: the file stays ours, as it was
        module.atomic_move(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)


def apply_edits(conf, settings, merge, state):
    keys = {}
    if state == "present":
        for key, value in settings.items():
            if value is None:
                raise SlurmConfError("settings.%s has no value (use state=absent to remove a key)" % key)
            if isinstance(value, bool):
                value = "yes" if value else "no"
            keys[key] = conf.set(key, value)
        for key, items in merge.items():
            keys[key] = conf.merge(key, as_list(key, items))
    else:
        for key in settings:
            keys[key] = conf.remove(key)
        for key, items in merge.items():
            keys[key] = conf.remove_items(key, as_list(key, items))
    return keys


def as_list(key, items):
    if isinstance(items, (list, tuple)):
        return ["%s" % (item,) for item in items]
    if isinstance(items, str):
        return [item for item in (part.strip() for part in items.split(",")) if item]
    raise SlurmConfError("merge.%s must be a list of items" % key)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/slurm/slurm.conf"),
            settings=dict(type="dict", default={}),
            merge=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            backup=dict(type="bool", default=False),
            follow_includes=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    if not os.path.isfile(path):
        module.fail_json(msg="%s does not exist or is not a file" % path)
    overlap = set(k.lower() for k in params["settings"]) & set(k.lower() for k in params["merge"])
    if overlap:
        module.fail_json(msg="keys in both settings and merge: %s" % ", ".join(sorted(overlap)))

    try:
        conf = SlurmConf(path, follow_includes=params["follow_includes"])
        keys = apply_edits(conf, params["settings"], params["merge"], params["state"])
    except SlurmConfError as exc:
        module.fail_json(msg=to_native(exc))

    changed_files = conf.changed()
    result = dict(
        changed=bool(changed_files),
        changed_files=[f.path for f in changed_files],
        files=list(conf.order),
        edits=keys,
        changed_keys=[key for key, info in keys.items() if info["action"] != "unchanged"],
    )
    for warning in sorted(set(conf.warnings)):
        module.warn(warning)
    if module._diff:
        result["diff"] = [dict(before=f.original, after=f.text,
                               before_header=f.path, after_header=f.path)
                          for f in changed_files]
    if changed_files and not module.check_mode:
        backups = {}
        for conf_file in changed_files:
            if params["backup"]:
                backups[conf_file.path] = module.backup_local(conf_file.path)
            try:
                write_atomic(module, conf_file.path, conf_file.text)
            except (IOError, OSError) as exc:
                module.fail_json(msg="cannot write %s: %s" % (conf_file.path, to_native(exc)), **result)
        if backups:
            result["backup_files"] = backups
    module.exit_json(**result)


if __name__ == "__main__":
    main()
