# SPDX-License-Identifier: GPL-3.0-or-later
# Shared settings for the sid (Slurm 26.05, Debian unstable) lab. Sourced by build.sh, up.sh, down.sh.
# The same recipe as lab/trixie/ (see its README), with its own root, ports and lock.
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

SID_NAME=sid
LAB_BASE=${SLURM_ADOPT_LAB_BASE:-/var/lib/slurm-adopt-lab}
SID_DIR=$LAB_BASE/sid
ROOT=$SID_DIR/root
STAMP=$SID_DIR/build.stamp
KEYS_DIR=$SID_DIR/keys
CACHE_DIR=${SLURM_ADOPT_LAB_CACHE:-/var/cache/slurm-adopt-lab}
STATE_DIR=/run/slurm-adopt-lab
STATE_FILE=$STATE_DIR/sid.json
MIRROR=${SID_MIRROR:-http://deb.debian.org/debian}
SUITE=sid

# Packages installed into the chroot on top of debootstrap's minbase.
SID_PACKAGES="slurmd slurmctld slurm-client munge openssh-server openssh-client \
libpam-python libpam-slurm-adopt python3 procps xauth xvfb"

# Bump when the build recipe changes in a way that must invalidate stamp and cache.
BUILD_REV=1
BUILD_ID="$SUITE-r$BUILD_REV-$(printf '%s' "$SID_PACKAGES" | tr -s ' \n' ' ' | sha256sum | cut -c1-12)"

NODENAME=sid1
SLURMCTLD_PORT=8817
SLURMD_PORT=8818
SSH_PORT_PLAIN=2401
SSH_PORT_C=2402
SSH_PORT_PY=2403
SPOOL_DIR=/var/spool/slurmd            # inside ROOT
STATESAVE_DIR=/var/spool/slurmctld     # inside ROOT
SYSLOG_FILE_IN_ROOT=/var/log/lab-syslog.log
MODULE_DIR_IN_ROOT=/opt/slurm-adopt

LAB_USERS="labalice labbob labcarol labdave labadmin"
ADMIN_GROUP=labwheel

log() { printf '[sid %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
# /run/slurm-adopt-lab/sid.lock), so up/down/rebuild never pull the lab from under a
# test session that holds it. Held on fd 9 until the script exits; daemons must be started
# with 9>&- so they do not inherit (and keep) it. Re-entrant through SID_LAB_LOCKED.
LOCK_FILE=$STATE_DIR/sid.lock
lab_lock() {
    [ "${SID_LAB_LOCKED:-}" = 1 ] && return 0
    mkdir -p "$STATE_DIR"
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        log "waiting for the lab lock $LOCK_FILE (held by a test session?)"
        flock -w "${SID_LOCK_WAIT:-900}" 9 || die "lab lock $LOCK_FILE busy for ${SID_LOCK_WAIT:-900}s"
    fi
    export SID_LAB_LOCKED=1
}
