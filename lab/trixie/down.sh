#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The trixie lab's down.sh: the shared chroot-lab recipe (lab/chroot/) for Debian trixie.
exec bash "$(dirname "$0")/../chroot/down.sh" trixie "$@"
