#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build the chroot of a chroot lab: build.sh trixie|sid [options] (the release, its Slurm
# and its packages: common.sh).
#
# Idempotent:
#   1. stamp present and matching BUILD_ID          -> nothing to do;
#   2. cached tarball for BUILD_ID present          -> unpack it (fast path);
#   3. otherwise                                    -> debootstrap + apt-get (cold build),
#                                                      then write the cache tarball.
# Options: --no-cache (neither read nor write the tarball), --rebuild (ignore stamp and cache).
# Needs: root, debootstrap (installed with apt-get if missing), network access to the
# Debian mirror. Every network/command step runs under `timeout`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAB_RELEASE=${1:-}
shift || true
# shellcheck source=common.sh
. "$HERE/common.sh"

USE_CACHE=1
REBUILD=0
for a in "$@"; do
    case $a in
        --no-cache) USE_CACHE=0 ;;
        --rebuild) REBUILD=1 ;;
        *) die "unknown option $a" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "must run as root"
T0=$(date +%s)

if [ $REBUILD = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BUILD_ID" ] \
        && [ -x "$ROOT/usr/sbin/slurmd" ]; then
    log "already built ($BUILD_ID), nothing to do"
    exit 0
fi

lab_lock
if [ -n "$(mounts_under_root)" ]; then
    die "mounts exist under $ROOT (lab is up?); run lab/$LAB_RELEASE/down.sh first"
fi
if [ -n "$(pids_in_root)" ]; then
    die "processes are running inside $ROOT; run lab/$LAB_RELEASE/down.sh first"
fi

mkdir -p "$LAB_DIR" "$CACHE_DIR"
BUILD_LOG=$LAB_DIR/build.log
: > "$BUILD_LOG"

if command -v zstd >/dev/null; then
    CACHE_FILE=$CACHE_DIR/$LAB_RELEASE-root-$BUILD_ID.tar.zst
    COMPRESS="zstd -q -T0 -3"
    DECOMPRESS="zstd -q -d -c"
else
    CACHE_FILE=$CACHE_DIR/$LAB_RELEASE-root-$BUILD_ID.tar.gz
    COMPRESS="gzip -1"
    DECOMPRESS="gzip -d -c"
fi

NEW=$LAB_DIR/root.new
TMPMOUNTS=()
cleanup() {
    local m
    for ((i=${#TMPMOUNTS[@]}-1; i>=0; i--)); do
        m=${TMPMOUNTS[$i]}
        mountpoint -q "$m" && umount -l "$m" || true
    done
}
trap cleanup EXIT

rm_tree() {
    # Refuse to delete anything that still has a mount below it.
    local d=$1
    [ -e "$d" ] || return 0
    if awk -v r="$d" '$5 == r || index($5, r "/") == 1 { f=1 } END { exit !f }' /proc/self/mountinfo; then
        die "refusing to delete $d: something is mounted below it"
    fi
    rm -rf --one-file-system "$d"
}

finish() {
    # Replace ROOT by NEW and write the stamp.
    rm -f "$STAMP"
    rm_tree "$ROOT.old"
    [ -e "$ROOT" ] && mv "$ROOT" "$ROOT.old"
    mv "$NEW" "$ROOT"
    rm_tree "$ROOT.old"
    echo "$BUILD_ID" > "$STAMP"
}

rm_tree "$NEW"

# ---------------------------------------------------------------- fast path: cache
if [ $USE_CACHE = 1 ] && [ $REBUILD = 0 ] && [ -s "$CACHE_FILE" ]; then
    log "unpacking cached root $CACHE_FILE"
    mkdir -p "$NEW"
    if timeout 600 bash -c "$DECOMPRESS '$CACHE_FILE' | tar -C '$NEW' --numeric-owner -xpf -"; then
        finish
        log "restored from cache in $(( $(date +%s) - T0 ))s"
        exit 0
    fi
    log "cache unpack failed; removing it and doing a cold build"
    rm -f "$CACHE_FILE"
    rm_tree "$NEW"
fi

# ---------------------------------------------------------------- cold build
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y debootstrap >>"$BUILD_LOG" 2>&1
fi
[ -e /usr/share/debootstrap/scripts/$SUITE ] || die "this debootstrap does not know $SUITE"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KEYOPT=()
[ -s "$KEYRING" ] && KEYOPT=(--keyring="$KEYRING")

log "debootstrap --variant=minbase $SUITE (log: $BUILD_LOG)"
T1=$(date +%s)
if ! timeout 1800 debootstrap --variant=minbase "${KEYOPT[@]}" "$SUITE" "$NEW" "$MIRROR" >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "debootstrap failed"
fi
log "debootstrap done in $(( $(date +%s) - T1 ))s"

{
    echo "deb $MIRROR $SUITE main"
    if [ "$STABLE_POCKETS" = 1 ]; then
        echo "deb $MIRROR $SUITE-updates main"
        echo "deb $SECURITY_MIRROR $SUITE-security main"
    fi
} > "$NEW/etc/apt/sources.list"
[ "$STABLE_POCKETS" = 1 ] || echo 'Acquire::Check-Valid-Until "false";' > "$NEW/etc/apt/apt.conf.d/90lab-no-valid-until"
rm -f "$NEW/etc/apt/sources.list.d/debian.sources"
cp /etc/resolv.conf "$NEW/etc/resolv.conf" 2>/dev/null || true
# No daemon may start during package installation.
printf '#!/bin/sh\nexit 101\n' > "$NEW/usr/sbin/policy-rc.d"
chmod 755 "$NEW/usr/sbin/policy-rc.d"
echo force-unsafe-io > "$NEW/etc/dpkg/dpkg.cfg.d/lab-unsafe-io"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$NEW/etc/apt/apt.conf.d/90lab-norecommends"

mount -t proc proc "$NEW/proc"; TMPMOUNTS+=("$NEW/proc")
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$NEW/dev/pts"; TMPMOUNTS+=("$NEW/dev/pts")

log "apt-get install: $PACKAGES"
T1=$(date +%s)
CHENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8)
in_new() { chroot "$NEW" "${CHENV[@]}" "$@"; }
if ! timeout 900 chroot "$NEW" "${CHENV[@]}" apt-get -o Acquire::Retries=3 update >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2; die "apt-get update in chroot failed"
fi
# shellcheck disable=SC2086
if ! timeout 1800 chroot "$NEW" "${CHENV[@]}" apt-get -o Acquire::Retries=3 install -y $PACKAGES >>"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2; die "apt-get install in chroot failed"
fi
log "packages installed in $(( $(date +%s) - T1 ))s"

in_new apt-get clean >>"$BUILD_LOG" 2>&1
rm -rf "$NEW/var/lib/apt/lists/"* "$NEW/var/cache/apt/"*.bin
# Versions, for the record and for up.sh.
in_new dpkg-query -W -f '${Package} ${Version}\n' $PACKAGES > "$NEW/etc/slurm-adopt-lab-packages.txt" 2>/dev/null || true
cat "$NEW/etc/slurm-adopt-lab-packages.txt" >&2
cleanup; TMPMOUNTS=()

if [ $USE_CACHE = 1 ]; then
    log "writing cache $CACHE_FILE"
    T1=$(date +%s)
    rm -f "$CACHE_DIR/$LAB_RELEASE"-root-*.tmp
    if timeout 900 bash -c "tar -C '$NEW' --numeric-owner -cpf - . | $COMPRESS > '$CACHE_FILE.tmp'"; then
        # Keep only the current cache file.
        find "$CACHE_DIR" -maxdepth 1 -name "$LAB_RELEASE-root-*.tar.*" ! -name "$(basename "$CACHE_FILE").tmp" -delete
        mv "$CACHE_FILE.tmp" "$CACHE_FILE"
        log "cache written in $(( $(date +%s) - T1 ))s ($(du -h "$CACHE_FILE" | cut -f1))"
    else
        rm -f "$CACHE_FILE.tmp"
        log "WARNING: could not write cache"
    fi
fi

finish
log "cold build done in $(( $(date +%s) - T0 ))s"
