# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by pam_adopt and pam_stack_info: where the PAM tree and
    the state are, and where ordinary users start."""

    DOCUMENTATION = r'''
options:
  root:
    description:
      - Act on the tree below this directory instead of C(/) (chroots, images, tests).
      - Users, groups and C(login.defs) are read from that tree, never from the managed host. A tree with its
        own C(libpam) and C(python3) (an image) is evaluated with its own modules (chroot); a tree with only
        configuration files with this machine's modules and, when it has no C(/etc/passwd), this machine's users.
    type: path
    default: /
  pamd_dir:
    description: PAM configuration directory, as seen on the node.
    type: path
    default: /etc/pam.d
  vendor_dir:
    description:
      - Vendor PAM directory searched after O(pamd_dir) (Linux-PAM C(--enable-vendordir); openSUSE keeps
        C(sshd) there). A vendor file that must change is copied to O(pamd_dir) and the copy is edited.
    type: path
    default: /usr/lib/pam.d
  state_dir:
    description: Where originals and the manifest of written files are kept, as seen on the node.
    type: path
    default: /var/lib/slurm-adopt/pam
  directory_uid_min:
    description:
      - The first uid of ordinary users that are not in C(/etc/passwd) (directory users, for example C(500)).
        The first uid an ordinary user can have is the lowest of C(UID_MIN) in C(login.defs), the smallest uid
        of a person in C(/etc/passwd) and this value; kept bypass rules such as C(pam_succeed_if uid < N) are
        checked against it.
    type: int
'''
