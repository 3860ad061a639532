# SPDX-License-Identifier: GPL-3.0-or-later
# Shared settings of the chroot labs: one recipe, one Debian release per lab.
#   trixie: Debian 13, Slurm 24.11;  sid: Debian unstable, Slurm 26.05.
# Sourced by build.sh, up.sh and down.sh after they set LAB_RELEASE from their first argument
# (lab/trixie/*.sh and lab/sid/*.sh are wrappers that pass it).
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

case ${LAB_RELEASE:-} in
    trixie)
        DESCRIPTION="Debian 13 (trixie), Slurm 24.11"
        NODENAME=trixie1
        SLURMCTLD_PORT=7817
        SLURMD_PORT=7818
        SSH_PORT_PLAIN=2301
        SSH_PORT_C=2302
        SSH_PORT_PY=2303
        # Packages installed into the chroot on top of debootstrap's minbase. The list is
        # part of BUILD_ID (stamp and cache key): any change means a cold build.
        # xauth, xvfb: tests/node/test_x11.py (salloc --x11 on an Xvfb display).
        PACKAGES="slurmd slurmctld slurm-client munge openssh-server openssh-client \
libpam-python libpam-slurm-adopt python3 procps xauth xvfb"
        # suite-updates and suite-security exist for a stable release.
        STABLE_POCKETS=1
        ;;
    sid)
        DESCRIPTION="Debian unstable (sid), Slurm 26.05"
        NODENAME=sid1
        SLURMCTLD_PORT=8817
        SLURMD_PORT=8818
        SSH_PORT_PLAIN=2401
        SSH_PORT_C=2402
        SSH_PORT_PY=2403
        PACKAGES="slurmd slurmctld slurm-client munge openssh-server openssh-client \
libpam-python libpam-slurm-adopt python3 procps xauth xvfb"
        # The mirror may serve a dated sid snapshot whose Release file has expired
        # (lab-recipes.md): apt inside the chroot runs with Check-Valid-Until=false.
        STABLE_POCKETS=0
        ;;
    *)
        printf 'usage: %s trixie|sid [options] (the chroot lab to act on)\n' "$0" >&2
        exit 2
        ;;
esac
SUITE=$LAB_RELEASE
CLUSTER=${LAB_RELEASE}lab
# Environment names keep the per-lab prefix: TRIXIE_MIRROR, SID_LAB_LOCKED, ...
ENV_PREFIX=$(printf '%s' "$LAB_RELEASE" | tr '[:lower:]' '[:upper:]')
env_or() { local n="${ENV_PREFIX}_$1"; printf '%s' "${!n:-$2}"; }

LAB_BASE=${SLURM_ADOPT_LAB_BASE:-/var/lib/slurm-adopt-lab}
LAB_DIR=$LAB_BASE/$LAB_RELEASE
ROOT=$LAB_DIR/root
STAMP=$LAB_DIR/build.stamp
KEYS_DIR=$LAB_DIR/keys
CACHE_DIR=${SLURM_ADOPT_LAB_CACHE:-/var/cache/slurm-adopt-lab}
STATE_DIR=/run/slurm-adopt-lab
STATE_FILE=$STATE_DIR/$LAB_RELEASE.json
MIRROR=$(env_or MIRROR http://deb.debian.org/debian)
SECURITY_MIRROR=$(env_or SECURITY_MIRROR http://deb.debian.org/debian-security)

# Bump when the build recipe changes in a way that must invalidate stamp and cache.
BUILD_REV=1
BUILD_ID="$SUITE-r$BUILD_REV-$(printf '%s' "$PACKAGES" | tr -s ' \n' ' ' | sha256sum | cut -c1-12)"

SPOOL_DIR=/var/spool/slurmd            # inside ROOT
STATESAVE_DIR=/var/spool/slurmctld     # inside ROOT
SYSLOG_FILE_IN_ROOT=/var/log/lab-syslog.log
MODULE_DIR_IN_ROOT=/opt/slurm-adopt

LAB_USERS="labalice labbob labcarol labdave labadmin"
ADMIN_GROUP=labwheel

log() { printf '[%s %s] %s\n' "$LAB_RELEASE" "$(date +%H:%M:%S)" "$*" >&2; }
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
# /run/slurm-adopt-lab/<release>.lock), so up/down/rebuild never pull the lab from under a
# test session that holds it. Held on fd 9 until the script exits; daemons must be started
# with 9>&- so they do not inherit (and keep) it. Re-entrant through <PREFIX>_LAB_LOCKED
# (TRIXIE_LAB_LOCKED, SID_LAB_LOCKED); <PREFIX>_LOCK_WAIT bounds the wait (default 900 s).
LOCK_FILE=$STATE_DIR/$LAB_RELEASE.lock
lab_lock() {
    [ "$(env_or LAB_LOCKED '')" = 1 ] && return 0
    local wait_s
    wait_s=$(env_or LOCK_WAIT 900)
    mkdir -p "$STATE_DIR"
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        log "waiting for the lab lock $LOCK_FILE (held by a test session?)"
        flock -w "$wait_s" 9 || die "lab lock $LOCK_FILE busy for ${wait_s}s"
    fi
    export "${ENV_PREFIX}_LAB_LOCKED=1"
}
