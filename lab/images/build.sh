#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build the local podman images of systemd Slurm compute nodes (no registry here).
#
#   lab/images/build.sh [bookworm|trixie ...]    # default: both
#
# stdout: one image name per suite, e.g. localhost/slurm-adopt-node:bookworm
# (everything else goes to stderr).  Stable interface; other labs use it.
#
#   localhost/slurm-adopt-node:bookworm   Debian 12, Slurm 22.05
#   localhost/slurm-adopt-node:trixie     Debian 13, Slurm 24.11
#
# Steps, each cached and skipped when its inputs are unchanged:
#   1. debootstrap --variant=minbase SUITE  -> $CACHE_DIR/node-base-SUITE-<hash>.tar.zst
#   2. podman import of that tarball        -> localhost/slurm-adopt-base:SUITE-<hash>
#   3. podman build --network host with lab/images/Containerfile
#                                           -> localhost/slurm-adopt-node:SUITE-<hash>
#      (hash over the Containerfile, this script, SUITE and the base), then
#      tagged localhost/slurm-adopt-node:SUITE.
# A warm run (nothing changed) only re-tags: about a second.
#
# Options: --rebuild (ignore every cache), --print-only (print names, build nothing).
# Environment: NODE_IMAGE_MIRROR, NODE_IMAGE_SECURITY_MIRROR, SLURM_ADOPT_CACHE_DIR.
# Needs root; installs podman, runc, debootstrap, zstd with apt-get when missing.
# Runs containers? No.  How to run them: see lab/images/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=localhost/slurm-adopt-node
BASE_IMAGE=localhost/slurm-adopt-base
CACHE_DIR=${SLURM_ADOPT_CACHE_DIR:-/var/cache/slurm-adopt-lab}
MIRROR=${NODE_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${NODE_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
LOCK=/run/slurm-adopt-lab/images.lock
BASE_REV=1   # bump to force a new debootstrap

log() { printf 'images/build.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

REBUILD=0
PRINT_ONLY=0
SUITES=()
for a in "$@"; do
    case $a in
        bookworm|trixie) SUITES+=("$a") ;;
        --rebuild) REBUILD=1 ;;
        --print-only) PRINT_ONLY=1 ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
        *) die "unknown argument '$a' (want bookworm, trixie, --rebuild, --print-only)" ;;
    esac
done
[ ${#SUITES[@]} -gt 0 ] || SUITES=(bookworm trixie)

if [ $PRINT_ONLY = 1 ]; then
    for s in "${SUITES[@]}"; do echo "$IMAGE:$s"; done
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root"

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=300 \
        install -y -q "${need[@]}" >&2
fi

mkdir -p "$CACHE_DIR" "$(dirname "$LOCK")"
exec 9>"$LOCK"
if ! flock -n 9; then
    log "waiting for another build ($LOCK)"
    flock -w 1800 9 || die "timed out waiting for $LOCK"
fi

sha() { sha256sum | cut -c1-12; }

# ---------------------------------------------------------------- 1+2. base
# Echoes the base image name for $1.
base_image() {
    local suite=$1 h tarball img tmp t0
    h=$(printf 'rev=%s suite=%s mirror=%s variant=minbase' "$BASE_REV" "$suite" "$MIRROR" | sha)
    tarball=$CACHE_DIR/node-base-$suite-$h.tar.zst
    img=$BASE_IMAGE:$suite-$h
    if [ $REBUILD = 0 ] && podman image exists "$img"; then
        echo "$img"; return 0
    fi
    if [ $REBUILD = 1 ] || [ ! -s "$tarball" ]; then
        [ -e "/usr/share/debootstrap/scripts/$suite" ] || die "this debootstrap does not know $suite"
        tmp=$(mktemp -d "$CACHE_DIR/debootstrap-$suite.XXXXXX")
        t0=$SECONDS
        log "debootstrap --variant=minbase $suite (log: $tmp.log)"
        if ! timeout 1800 debootstrap --variant=minbase \
                --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
                "$suite" "$tmp/root" "$MIRROR" >"$tmp.log" 2>&1; then
            tail -n 30 "$tmp.log" >&2
            rm -rf --one-file-system "$tmp"
            die "debootstrap $suite failed"
        fi
        log "debootstrap $suite done in $((SECONDS - t0))s; writing $tarball"
        rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
        tar -C "$tmp/root" --numeric-owner -cpf - . | zstd -q -T0 -3 > "$tarball.tmp"
        mv "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$tmp" "$tmp.log"
        # keep only the current base tarball of this suite
        find "$CACHE_DIR" -maxdepth 1 -name "node-base-$suite-*.tar.zst" \
            ! -name "$(basename "$tarball")" -delete
    fi
    log "podman import $tarball -> $img"
    zstd -q -dc "$tarball" | podman import -q --change 'CMD ["/bin/bash"]' - "$img" >/dev/null
    echo "$img"
}

# ---------------------------------------------------------------- 3. node image
build_node() {
    local suite=$1 base h tag t0 old
    base=$(base_image "$suite")
    h=$(cat "$HERE/Containerfile" "${BASH_SOURCE[0]}" \
        | { cat; printf 'suite=%s base=%s mirror=%s %s\n' "$suite" "$base" "$MIRROR" "$SECURITY_MIRROR"; } \
        | sha)
    tag=$IMAGE:$suite-$h
    if [ $REBUILD = 1 ] || ! podman image exists "$tag"; then
        t0=$SECONDS
        log "podman build $tag (log: $CACHE_DIR/node-image-$suite.log)"
        if ! timeout 1800 podman build --network host --pull=never \
                --build-arg "BASE=$base" --build-arg "SUITE=$suite" \
                --build-arg "MIRROR=$MIRROR" --build-arg "SECURITY_MIRROR=$SECURITY_MIRROR" \
                --label "org.slurm-adopt.inputs=$h" \
                -f "$HERE/Containerfile" -t "$tag" "$HERE" \
                >"$CACHE_DIR/node-image-$suite.log" 2>&1; then
            tail -n 40 "$CACHE_DIR/node-image-$suite.log" >&2
            die "podman build $suite failed"
        fi
        log "built $tag in $((SECONDS - t0))s"
    fi
    podman tag "$tag" "$IMAGE:$suite"
    # Drop older input-hash tags of this suite (ignored while a container uses one).
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' "$IMAGE" \
                 | grep -E "^$IMAGE:$suite-[0-9a-f]{12}\$" | grep -vx "$tag"); do
        podman rmi "$old" >/dev/null 2>&1 || true
    done
    echo "$IMAGE:$suite"
}

T0=$SECONDS
for s in "${SUITES[@]}"; do
    build_node "$s"
done
log "done in $((SECONDS - T0))s"
