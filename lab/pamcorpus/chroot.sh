#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build (or find) the cached Debian chroot of one suite that holds the real PAM
# configuration generators for the corpus (tests/corpus):
#
#   lab/pamcorpus/chroot.sh SUITE          # bookworm | trixie | sid
#
# stdout: the chroot's directory, $CACHE/SUITE-<hash> (the root file system is
# its root/ subdirectory).  Everything else goes to stderr.
#
#   bookworm, trixie  pam-auth-update (libpam-runtime) with the PAM profiles of
#                     libpam-sss, libpam-krb5, libpam-winbind, libpam-ldapd and
#                     libpam-systemd, plus the services of openssh-server, cron,
#                     sudo and login.
#   sid               authselect 1.8 (the only suite that packages it), with
#                     libpam-sss/sssd-common from sid; plus the .debs of
#                     authselect and libauthselect5 kept in debs/ for the
#                     rhel_layout molecule scenario.
#
# Cache: the hash covers this script and the suite, so editing this file
# rebuilds every chroot at its next use.  A finished chroot has a `stamp`
# file; a half-built one (no stamp) is deleted and built again.  Old hashes of
# the same suite are deleted after a successful build.  Concurrent builds are
# serialised by a lock in the cache directory.
#
# The generators change files under etc/, var/lib/pam and var/cache/debconf;
# the pristine copies taken after the build are in pristine/ (render.py puts
# them back before every tree).
#
# Needs: root, debootstrap (installed with apt-get under the host's apt lock
# when missing), network access to the Debian mirror.  Every network step runs
# under `timeout`.
# Environment: PAMCORPUS_CACHE (default /var/cache/slurm-adopt-corpus),
# PAMCORPUS_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

SUITE=${1:-}
CACHE=${PAMCORPUS_CACHE:-/var/cache/slurm-adopt-corpus}
MIRROR=${PAMCORPUS_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${PAMCORPUS_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SELF=${BASH_SOURCE[0]}

log() { printf 'pamcorpus/chroot.sh %s: %s\n' "$SUITE" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# What each chroot gets on top of debootstrap's minbase.
COMMON_PACKAGES="libpam-runtime libpam-modules libpam-modules-bin openssh-server cron sudo login passwd"
case $SUITE in
    bookworm|trixie)
        PACKAGES="$COMMON_PACKAGES libpam-systemd libpam-sss libpam-krb5 libpam-winbind libpam-ldapd" ;;
    sid)
        PACKAGES="$COMMON_PACKAGES authselect libauthselect5 libpam-sss sssd-common" ;;
    *)
        die "usage: chroot.sh bookworm|trixie|sid" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root"
HASH=$( { cat "$SELF"; printf 'suite=%s mirror=%s\n' "$SUITE" "$MIRROR"; } | sha256sum | cut -c1-12)
DIR=$CACHE/$SUITE-$HASH
ROOT=$DIR/root

mkdir -p "$CACHE"
exec 8>"$CACHE/.lock-$SUITE"
flock -w 3600 8 || die "timed out waiting for $CACHE/.lock-$SUITE"

if [ -f "$DIR/stamp" ]; then
    echo "$DIR"
    exit 0
fi

rm_tree() {
    local d=$1
    [ -e "$d" ] || return 0
    if awk -v r="$d" '$5 == r || index($5, r "/") == 1 { f=1 } END { exit !f }' /proc/self/mountinfo; then
        die "refusing to delete $d: something is mounted below it"
    fi
    rm -rf --one-file-system "$d"
}

MOUNTS=()
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        mountpoint -q "${MOUNTS[$i]}" && umount -l "${MOUNTS[$i]}" || true
    done
}
trap cleanup EXIT

rm_tree "$DIR"
mkdir -p "$DIR"
BUILD_LOG=$DIR/build.log
T0=$SECONDS

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive flock -w 1800 /run/lock/saf-apt.lock \
        timeout 900 apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >>"$BUILD_LOG" 2>&1 \
        || die "could not install debootstrap (log: $BUILD_LOG)"
fi
[ -e "/usr/share/debootstrap/scripts/$SUITE" ] || die "this debootstrap does not know $SUITE"

log "debootstrap --variant=minbase $SUITE (log: $BUILD_LOG)"
if ! timeout 1800 debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$ROOT" "$MIRROR" >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "debootstrap failed"
fi

{
    echo "deb $MIRROR $SUITE main"
    if [ "$SUITE" != sid ]; then
        echo "deb $MIRROR $SUITE-updates main"
        echo "deb $SECURITY_MIRROR $SUITE-security main"
    fi
} > "$ROOT/etc/apt/sources.list"
rm -f "$ROOT/etc/apt/sources.list.d/debian.sources"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"     # no daemon starts
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
echo force-unsafe-io > "$ROOT/etc/dpkg/dpkg.cfg.d/pamcorpus-unsafe-io"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$ROOT/etc/apt/apt.conf.d/90pamcorpus-norecommends"
# The mirror serves sid as a dated snapshot whose Release file has expired.
echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/90pamcorpus-valid-until"

mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
CHENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8)
in_root() { chroot "$ROOT" "${CHENV[@]}" "$@"; }

log "apt-get install $PACKAGES"
if ! timeout 900 chroot "$ROOT" "${CHENV[@]}" apt-get -o Acquire::Retries=3 update >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2; die "apt-get update failed"
fi
# shellcheck disable=SC2086
if ! timeout 1800 chroot "$ROOT" "${CHENV[@]}" apt-get -o Acquire::Retries=3 install -y $PACKAGES >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2; die "apt-get install failed"
fi

if [ "$SUITE" = sid ]; then
    # authselect's .debs for the rhel_layout molecule scenario (they install on
    # Debian 12: libc6 >= 2.34, libselinux1 >= 3.1, libpopt0 >= 1.14).
    mkdir -p "$ROOT/tmp/debs"
    (timeout 600 chroot "$ROOT" "${CHENV[@]}" sh -c \
        'cd /tmp/debs && apt-get -o Acquire::Retries=3 download authselect libauthselect5') >>"$BUILD_LOG" 2>&1 \
        || die "apt-get download authselect failed"
    mv "$ROOT/tmp/debs" "$DIR/debs"
fi

in_root dpkg-query -W -f '${Package} ${Version}\n' > "$DIR/versions.txt"
in_root apt-get clean >>"$BUILD_LOG" 2>&1
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin
cleanup; MOUNTS=()

# Pristine copies of what the generators change.
mkdir -p "$DIR/pristine"
for d in etc var/lib/pam var/cache/debconf; do
    mkdir -p "$DIR/pristine/$(dirname "$d")"
    cp -a "$ROOT/$d" "$DIR/pristine/$d"
done

date -u +%FT%TZ > "$DIR/stamp"
# Keep only the current chroot of this suite.
for old in "$CACHE/$SUITE"-*; do
    [ "$old" = "$DIR" ] || [ ! -d "$old" ] || rm_tree "$old"
done
log "built in $((SECONDS - T0))s: $DIR"
echo "$DIR"
