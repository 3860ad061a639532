#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The sid lab's down.sh: the shared chroot-lab recipe (lab/chroot/) for Debian sid.
exec bash "$(dirname "$0")/../chroot/down.sh" sid "$@"
