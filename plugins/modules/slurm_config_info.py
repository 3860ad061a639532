#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: slurm_config_info
short_description: The configuration the Slurm controller is running with (scontrol show config)
version_added: "0.1.0"
description:
  - Runs C(scontrol show config) and returns the values as a dictionary, to verify
    that what a configuration file says is what slurmctld actually uses.
  - Read-only; runs in check mode too.
  - The values come from the running slurmctld, not from any file on the host
    where the module runs, so they change only after slurmctld was restarted or
    reconfigured.
author:
  - hpc.slurm_adopt maintainers (@hpc-slurm-adopt)
options:
  scontrol:
    description:
      - The scontrol command (name looked up in E(PATH), or a path).
    type: str
    default: scontrol
  slurm_conf:
    description:
      - Run scontrol with E(SLURM_CONF) set to this file (for a cluster whose
        configuration is not in the default place).
    type: path
  timeout:
    description:
      - Seconds to wait for scontrol (the controller may be unreachable).
    type: int
    default: 60
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Values are returned as scontrol prints them (for example C(PrologFlags) as
    C(Alloc,Contain), unset values as C((null))); compare them case-insensitively.
seealso:
  - module: hpc.slurm_adopt.slurm_conf
"""

EXAMPLES = r"""
---
- name: Read the running Slurm configuration
  hpc.slurm_adopt.slurm_config_info:
  register: slurm_running

- name: PrologFlags has Contain
  ansible.builtin.assert:
    that:
      - "'contain' in (slurm_running.config.PrologFlags | lower).split(',')"
"""

RETURN = r"""
config:
  description: The main section, key (as scontrol spells it) to value.
  returned: success
  type: dict
  sample: {PrologFlags: "Alloc,Contain", ProctrackType: proctrack/cgroup, TaskPlugin: "task/cgroup,task/affinity"}
config_lower:
  description: RV(config) with lower-cased keys, for case-insensitive look-ups.
  returned: success
  type: dict
  sample: {prologflags: "Alloc,Contain"}
sections:
  description: The other sections (C(Cgroup Support Configuration), C(MPI Plugins Configuration), ...), each a dict.
  returned: success
  type: dict
  sample: {"Cgroup Support Configuration": {CgroupPlugin: cgroup/v1, ConstrainRAMSpace: "yes"}}
controllers:
  description: The controller status lines.
  returned: success
  type: list
  elements: dict
  sample: [{role: primary, host: ctl1, state: UP}]
as_of:
  description: The time stamp scontrol printed ("Configuration data as of ...").
  returned: success
  type: str
  sample: "2026-11-26T11:56:27"
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

PAIR_RE = re.compile(r"^(\S.*?)\s*=\s?(.*)$")
CONTROLLER_RE = re.compile(r"^Slurmctld\((\w+)\) at (\S+) is (\S+)")
AS_OF_RE = re.compile(r"^Configuration data as of (.*)$")


def parse_show_config(text):
    """Parse `scontrol show config` output into (config, sections,
    controllers, as_of)."""
    config, sections, controllers, as_of = {}, {}, [], None
    current = config
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        match = AS_OF_RE.match(line)
        if match:
            as_of = match.group(1)
            continue
        match = CONTROLLER_RE.match(line)
        if match:
            controllers.append(dict(role=match.group(1), host=match.group(2), state=match.group(3)))
            continue
        if line.endswith(":") and "=" not in line:
            current = sections.setdefault(line[:-1].strip(), {})
            continue
        match = PAIR_RE.match(line)
        if match:
            current[match.group(1).strip()] = match.group(2).strip()
    return config, sections, controllers, as_of


def main():
    module = AnsibleModule(
        argument_spec=dict(
            scontrol=dict(type="str", default="scontrol"),
            slurm_conf=dict(type="path"),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    scontrol = module.params["scontrol"]
    if os.sep not in scontrol:
        scontrol = module.get_bin_path(scontrol, required=True)
    environ = {}
    if module.params["slurm_conf"]:
        environ["SLURM_CONF"] = module.params["slurm_conf"]
    command = [scontrol, "show", "config"]
    if module.params["timeout"] > 0:
        timeout_bin = module.get_bin_path("timeout")
        if timeout_bin:
            command = [timeout_bin, str(module.params["timeout"])] + command
    rc, out, err = module.run_command(command, environ_update=environ)
    if rc != 0:
        module.fail_json(msg="scontrol show config failed (rc=%d): %s" % (rc, err.strip() or out.strip()),
                         rc=rc, stdout=out, stderr=err)
    config, sections, controllers, as_of = parse_show_config(out)
    if not config:
        module.fail_json(msg="scontrol show config printed no configuration", stdout=out, stderr=err)
    module.exit_json(changed=False, config=config,
                     config_lower=dict((key.lower(), value) for key, value in config.items()),
                     sections=sections, controllers=controllers, as_of=as_of)


if __name__ == "__main__":
    main()
