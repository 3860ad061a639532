#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The .debs that install the real authselect 1.8 on a Debian 12 node (the
# rhel_layout molecule scenario):
#
#   lab/pamcorpus/authselect-debs.sh DIR
#
# Puts into DIR: authselect and libauthselect5 from Debian sid (downloaded when
# the sid chroot of lab/pamcorpus/chroot.sh was built; they need only libc6 >=
# 2.34, libselinux1 >= 3.1 and libpopt0 >= 1.14, which Debian 12 has), and
# Debian 12's libpopt0 (apt-get download on this Debian 12 machine; the node's
# network is internal, it cannot fetch it).  stdout: DIR.  Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:?usage: authselect-debs.sh DIR}
log() { printf 'pamcorpus/authselect-debs.sh: %s\n' "$*" >&2; }

SID=$(bash "$HERE/chroot.sh" sid | tail -n 1)
mkdir -p "$DIR"
n=0
for deb in "$SID"/debs/authselect_*.deb "$SID"/debs/libauthselect5_*.deb; do
    [ -f "$deb" ] || { log "ERROR: no $deb (rebuild the sid chroot)"; exit 1; }
    cp "$deb" "$DIR/"
    n=$((n + 1))
done
[ $n = 2 ] || { log "ERROR: expected 2 authselect .debs in $SID/debs, found $n"; exit 1; }

. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || log "WARNING: this machine is ${VERSION_CODENAME:-?}, libpopt0 comes from its suite"
if ! ls "$DIR"/libpopt0_*.deb >/dev/null 2>&1; then
    if ! (cd "$DIR" && timeout 300 apt-get download libpopt0 >/dev/null 2>&1); then
        log "apt-get download libpopt0 failed; apt-get update and again"
        flock -w 1800 /run/lock/saf-apt.lock timeout 600 apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
        (cd "$DIR" && timeout 300 apt-get download libpopt0 >&2)
    fi
fi
ls "$DIR"/*.deb >&2
echo "$DIR"
