#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build (or find) the cached root file system of a stateless compute node
# image, as a site builds one for Warewulf 4 or an OpenHPC recipe
# (docs/images.md): Debian 12 with systemd, OpenSSH, munge, slurmd 22.05,
# libpam-python and python3, and the fleet lab's users and admin group
# (fleetwheel), so that the image can boot as a compute node of lab/fleet.
# Nothing in it is configured for pam_slurm_adopt: pam_systemd is in
# common-session (libpam-systemd), systemd-logind is enabled, sshd has
# Debian's config, and there is no slurm.conf (configless or NFS at boot).
#
#   lab/image/build.sh            # prints the directory; the image root is its root/
#
# Cache: $IMAGE_CACHE/bookworm-<hash> (default /var/cache/slurm-adopt-image);
# the hash covers this script and the mirror, so editing the recipe rebuilds
# it.  A finished build has a `stamp`; a half-built one is deleted and built
# again.  Tests never change the cached root: they copy it (cp -a) first.
#
# Needs: root, debootstrap, the Debian mirror.  ~4 min cold, instant warm.
set -euo pipefail

SUITE=bookworm
CACHE=${IMAGE_CACHE:-/var/cache/slurm-adopt-image}
MIRROR=${IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SELF=${BASH_SOURCE[0]}
PACKAGES="systemd systemd-sysv dbus libpam-systemd openssh-server munge slurmd slurm-client
          python3 libpam-python sudo iproute2 procps"

log() { printf 'image/build.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
HASH=$( { cat "$SELF"; printf 'suite=%s mirror=%s\n' "$SUITE" "$MIRROR"; } | sha256sum | cut -c1-12)
DIR=$CACHE/$SUITE-$HASH
ROOT=$DIR/root

mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock -w 3600 8 || die "timed out waiting for $CACHE/.lock"
if [ -f "$DIR/stamp" ]; then
    echo "$DIR"
    exit 0
fi

mounted_below() {
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { f=1 } END { exit !f }' /proc/self/mountinfo
}
MOUNTS=()
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        mountpoint -q "${MOUNTS[$i]}" && umount -l "${MOUNTS[$i]}" || true
    done
}
trap cleanup EXIT

if [ -e "$DIR" ]; then
    mounted_below "$DIR" && die "refusing to delete $DIR: something is mounted below it"
    rm -rf --one-file-system "$DIR"
fi
mkdir -p "$DIR"
BUILD_LOG=$DIR/build.log
T0=$SECONDS

log "debootstrap --variant=minbase $SUITE (log: $BUILD_LOG)"
timeout 1800 debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$ROOT" "$MIRROR" >>"$BUILD_LOG" 2>&1 || { tail -n 30 "$BUILD_LOG" >&2; die "debootstrap failed"; }

printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" > "$ROOT/etc/apt/sources.list"
rm -f "$ROOT/etc/apt/sources.list.d/debian.sources"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"       # no daemon starts in the chroot
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$ROOT/etc/apt/apt.conf.d/90image-norecommends"

mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
CHENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8)
in_root() { chroot "$ROOT" "${CHENV[@]}" "$@"; }

log "apt-get install $(echo $PACKAGES)"
timeout 900 chroot "$ROOT" "${CHENV[@]}" apt-get -o Acquire::Retries=3 update >>"$BUILD_LOG" 2>&1 \
    || { tail -n 30 "$BUILD_LOG" >&2; die "apt-get update failed"; }
# shellcheck disable=SC2086
timeout 1800 chroot "$ROOT" "${CHENV[@]}" apt-get -o Acquire::Retries=3 install -y $PACKAGES >>"$BUILD_LOG" 2>&1 \
    || { tail -n 30 "$BUILD_LOG" >&2; die "apt-get install failed"; }

# What a compute node image of the lab has besides packages: the site's
# users and admin group (a site may take them from LDAP instead), the
# container-friendly units of lab/images/Containerfile, slurmd enabled
# (slurm.conf comes from the shared /etc/slurm at boot), an empty machine-id.
in_root sh -eu -c '
    groupadd -g 31000 fleetwheel
    useradd -m -s /bin/bash -u 31001 fleetalice
    useradd -m -s /bin/bash -u 31002 fleetbob
    useradd -m -s /bin/bash -u 31005 -G fleetwheel fleetadmin
    useradd -m -s /bin/bash -u 31006 fleetops
    printf "fleetops ALL=(ALL) NOPASSWD: ALL\n" > /etc/sudoers.d/fleetops
    chmod 440 /etc/sudoers.d/fleetops
    mkdir -p /var/lib/slurm/slurmd /var/log/slurm
    systemctl mask getty@tty1.service console-getty.service systemd-firstboot.service \
        systemd-modules-load.service >/dev/null 2>&1
    systemctl enable ssh munge slurmd >/dev/null 2>&1
    : > /etc/machine-id; rm -f /var/lib/dbus/machine-id
'
in_root dpkg-query -W -f '${Package} ${Version}\n' > "$DIR/versions.txt"
in_root apt-get clean >>"$BUILD_LOG" 2>&1
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin "$ROOT/usr/sbin/policy-rc.d"
cleanup; MOUNTS=()

date -u +%FT%TZ > "$DIR/stamp"
for old in "$CACHE/$SUITE"-*; do
    [ "$old" = "$DIR" ] || [ ! -d "$old" ] || mounted_below "$old" || rm -rf --one-file-system "$old"
done
log "built in $((SECONDS - T0))s: $DIR"
echo "$DIR"
