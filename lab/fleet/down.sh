#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Remove the fleet lab: its four containers and its internal network.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/fleet/common.sh
. "$HERE/common.sh"
podman rm -f -t 2 "${CONTAINERS[@]}" >/dev/null 2>&1
if podman network exists "$NET"; then
    podman network rm "$NET" >/dev/null
fi
log "down"
