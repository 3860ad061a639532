#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Stop a chroot lab (down.sh trixie|sid): every process whose root is the chroot, then the chroot's mounts.
# Idempotent, bounded. Only mounts strictly below ROOT are touched (deepest first, lazily);
# the host's /proc, /sys and /dev are never unmounted. Leftover empty cgroup v1 directories
# of this node (slurm_<NodeName>) are removed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAB_RELEASE=${1:-}
shift || true
# shellcheck source=common.sh
. "$HERE/common.sh"
[ "$(id -u)" = 0 ] || die "must run as root"
lab_lock

# Graceful first: cancel jobs and stop the Slurm daemons through their own interfaces.
if mountpoint -q "$ROOT/proc" && [ -n "$(pids_in_root)" ]; then
    timeout 15 chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin scancel --quiet -w "$NODENAME" >/dev/null 2>&1 || true
fi

# TERM, wait up to 10 s, then KILL, wait up to 5 s. Processes are selected by their root
# directory, so nothing outside the chroot is ever signalled.
signal_all() { local p; for p in $(pids_in_root); do kill "-$1" "$p" 2>/dev/null || true; done; }
signal_all TERM
for _ in $(seq 50); do [ -z "$(pids_in_root)" ] && break; sleep 0.2; done
if [ -n "$(pids_in_root)" ]; then
    log "killing remaining chroot processes: $(pids_in_root | tr '\n' ' ')"
    signal_all KILL
    for _ in $(seq 25); do [ -z "$(pids_in_root)" ] && break; sleep 0.2; done
fi
[ -z "$(pids_in_root)" ] || log "WARNING: processes still inside $ROOT: $(pids_in_root | tr '\n' ' ')"

# No stepd runs any more, so every socket left in the spool dir is stale.
[ -n "$(pids_in_root)" ] || python3 "$HERE/prune_stale_sockets.py" "$ROOT$SPOOL_DIR" "$NODENAME" >/dev/null 2>&1 || true

# Unmount everything below ROOT, deepest first. Recheck after each pass because a lazy
# unmount of a parent also detaches its children.
for _ in 1 2 3 4 5; do
    m=$(mounts_under_root)
    [ -z "$m" ] && break
    while IFS= read -r mp; do
        case $mp in "$ROOT"/*) ;; *) continue ;; esac   # never anything outside ROOT
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done <<< "$m"
done
[ -z "$(mounts_under_root)" ] || log "WARNING: still mounted: $(mounts_under_root | tr '\n' ' ')"

# Empty cgroup v1 directories left by this node's slurmd (depth first; rmdir only works
# on empty cgroups, so nothing with live tasks is affected).
for ctl in /sys/fs/cgroup/*/; do
    d=${ctl}slurm_$NODENAME
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

rm -f "$STATE_FILE"
log "$LAB_RELEASE lab down"
