#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The fleet tests, start to finish: a fresh multi-node lab (up.sh), the
# pytest scenario in tests/fleet against it, then the lab is removed
# (FLEET_KEEP=1 keeps it for a look).  Exit status: pytest's.
#
#   lab/fleet/test.sh [pytest args...]
#
# Logs of every ansible-playbook run: $FLEET_LOG_DIR (default a temp dir,
# printed at the end).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lab/fleet/common.sh
. "$HERE/common.sh"

T0=$SECONDS
[ -x "$REPO/.venv/bin/pytest" ] || bash "$REPO/scripts/venv.sh" >/dev/null || die "scripts/venv.sh failed"
export FLEET_LOG_DIR=${FLEET_LOG_DIR:-$(mktemp -d /tmp/fleet-logs.XXXXXX)}
log "bringing up a fresh lab"
FLEET_FRESH=1 bash "$HERE/up.sh" || die "lab bring-up failed"
T1=$SECONDS
cd "$REPO" || exit 1
"$REPO/.venv/bin/pytest" -p no:cacheprovider -o addopts="" -v -rA tests/fleet "$@"
status=$?
T2=$SECONDS
if [ "${FLEET_KEEP:-0}" != 1 ]; then
    bash "$HERE/down.sh"
fi
log "bring-up $((T1 - T0))s, tests $((T2 - T1))s, total $((SECONDS - T0))s; playbook logs in $FLEET_LOG_DIR"
exit $status
