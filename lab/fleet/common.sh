# SPDX-License-Identifier: GPL-3.0-or-later
# Shared names of the fleet lab (sourced by up.sh, down.sh, test.sh, demo.sh).
# shellcheck shell=bash
# shellcheck disable=SC2034
NET=saf-net
# /etc/slurm of every container: one podman volume, as a site shares it over
# NFS (or Bright's /cm/shared): one slurm.conf, written by whichever host edits it.
SLURM_VOLUME=saf-slurm-etc
CONTAINERS=(saf-ctl saf-node1 saf-node2 saf-login)
declare -A HOSTS=([saf-ctl]=ctl [saf-node1]=node1 [saf-node2]=node2 [saf-login]=login)
USERS=(fleetalice fleetbob fleetadmin fleetops)
STATE=${FLEET_STATE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.state}
FLEET_WAIT=${FLEET_WAIT:-90}

log() { printf 'fleet: %s\n' "$*" >&2; }
die() { printf 'fleet: ERROR: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.5
    done
}
