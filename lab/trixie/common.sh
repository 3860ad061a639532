# SPDX-License-Identifier: GPL-3.0-or-later
# Shared settings for the trixie (Slurm 24.11) lab. Sourced by build.sh, up.sh, down.sh.
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

TRIXIE_NAME=trixie
LAB_BASE=${SLURM_ADOPT_LAB_BASE:-/var/lib/slurm-adopt-lab}
TRIXIE_DIR=$LAB_BASE/trixie
ROOT=$TRIXIE_DIR/root
STAMP=$TRIXIE_DIR/build.stamp
KEYS_DIR=$TRIXIE_DIR/keys
CACHE_DIR=${SLURM_ADOPT_LAB_CACHE:-/var/cache/slurm-adopt-lab}
STATE_DIR=/run/slurm-adopt-lab
STATE_FILE=$STATE_DIR/trixie.json
MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${TRIXIE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=trixie

# Packages installed into the chroot on top of debootstrap's minbase.
TRIXIE_PACKAGES="slurmd slurmctld slurm-client munge openssh-server openssh-client \
libpam-python libpam-slurm-adopt python3 procps"

# Bump when the build recipe changes in a way that must invalidate stamp and cache.
BUILD_REV=1
BUILD_ID="$SUITE-r$BUILD_REV-$(printf '%s' "$TRIXIE_PACKAGES" | tr -s ' \n' ' ' | sha256sum | cut -c1-12)"

NODENAME=trixie1
SLURMCTLD_PORT=7817
SLURMD_PORT=7818
SSH_PORT_PLAIN=2301
SSH_PORT_C=2302
SSH_PORT_PY=2303
SPOOL_DIR=/var/spool/slurmd            # inside ROOT
STATESAVE_DIR=/var/spool/slurmctld     # inside ROOT
SYSLOG_FILE_IN_ROOT=/var/log/lab-syslog.log
MODULE_DIR_IN_ROOT=/opt/slurm-adopt

LAB_USERS="labalice labbob labcarol labdave labadmin"
ADMIN_GROUP=labwheel

log() { printf '[trixie %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Mount points below ROOT (deepest first), from /proc/self/mountinfo.
# Field 5 is the mount point with octal escapes; our paths have none.
mounts_under_root() {
    awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo \
        | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

# PIDs of processes whose root directory is ROOT (i.e. everything running in the chroot).
pids_in_root() {
    local p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [ "$r" = "$ROOT" ] && echo "${p#/proc/}"
    done
}

# The lab's advisory lock: the same file as labctl.Lab.lock() (flock on
# /run/slurm-adopt-lab/trixie.lock), so up/down/rebuild never pull the lab from under a
# test session that holds it. Held on fd 9 until the script exits; daemons must be started
# with 9>&- so they do not inherit (and keep) it. Re-entrant through TRIXIE_LAB_LOCKED.
LOCK_FILE=$STATE_DIR/trixie.lock
lab_lock() {
    [ "${TRIXIE_LAB_LOCKED:-}" = 1 ] && return 0
    mkdir -p "$STATE_DIR"
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        log "waiting for the lab lock $LOCK_FILE (held by a test session?)"
        flock -w "${TRIXIE_LOCK_WAIT:-900}" 9 || die "lab lock $LOCK_FILE busy for ${TRIXIE_LOCK_WAIT:-900}s"
    fi
    export TRIXIE_LAB_LOCKED=1
}
