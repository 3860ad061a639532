# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash
# Sourced by the labs' up.sh before they start daemons. A caller that serialises lab use
# with `flock LOCKFILE lab/.../up.sh` passes its lock's fd to the script, and every daemon
# started from it would inherit that fd and hold the lock for the daemon's lifetime (seen:
# munged and the syslog sink of a chroot lab kept /run/lock/saf-slurmlab.lock, so every
# later `flock` on it waited forever). Closing the inherited copy here does not release the
# caller's lock: flock(1) keeps its own fd until the command returns.
# Only fds that point at a *.lock file are closed, and never fd 9 (the lab's own lock,
# which the scripts hold themselves and do not pass to daemons: `9>&-`).
close_inherited_lock_fds() {
    local p fd
    for p in /proc/"$BASHPID"/fd/*; do
        fd=${p##*/}
        case $fd in 0|1|2|9|255) continue ;; esac
        case $(readlink "$p" 2>/dev/null) in
            *.lock) eval "exec $fd>&-" ;;
        esac
    done
}
close_inherited_lock_fds
