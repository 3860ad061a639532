#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Stop what lab/host/up.sh started: cancel lab jobs, stop the four sshds,
# slurmd and slurmctld; then munged and rsyslogd, but only if up.sh started
# them and no other lab (/run/slurm-adopt-lab/*.json) is still up.
# Users, keys, PAM files, configs and packages are left in place.
# Every wait is bounded; safe to run when the lab is (partly) down.
set -uo pipefail

LAB=/var/lib/slurm-adopt-lab/host
STATE_DIR=/run/slurm-adopt-lab
HOST=$(hostname -s)
export SLURM_CONF=$LAB/etc/slurm.conf
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

log() { printf 'down.sh: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }

# alive PID: running and not a zombie (PID 1 here may reap orphans late).
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pidfile NAME PIDFILE [SECONDS]: SIGTERM, bounded wait, then SIGKILL.
stop_pidfile() {
    local name=$1 pidf=$2 secs=${3:-15} pid i
    [ -s "$pidf" ] || return 0
    pid=$(cat "$pidf")
    if [ -z "$pid" ] || ! alive "$pid"; then
        rm -f "$pidf"; return 0
    fi
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null
    for ((i = 0; i < secs * 5; i++)); do
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        log "$name did not exit in ${secs}s, killing"
        kill -9 "$pid" 2>/dev/null
        sleep 0.2
    fi
    rm -f "$pidf"
}

# Tests should see "not up" (skip) rather than a half-stopped lab.
rm -f "$STATE_DIR/host.json"

# 1. jobs
if [ -f "$SLURM_CONF" ] && timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    jobs=$(timeout 15 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 15 scancel $jobs
        for ((i = 0; i < 100; i++)); do
            [ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

# 2. sshds
for kind in plain c py floor; do
    stop_pidfile "sshd-lab-$kind" "$LAB/run/sshd-lab-$kind.pid" 10
done

# 3. slurm daemons
stop_pidfile slurmd "$LAB/run/slurmd.pid" 20
stop_pidfile slurmctld "$LAB/run/slurmctld.pid" 20
# Leftover step daemons of this lab's node (only if cancelling failed).
for p in $(pgrep -x slurmstepd); do
    if grep -q ":/slurm_$HOST/" "/proc/$p/cgroup" 2>/dev/null \
       && [ "$(readlink "/proc/$p/root")" = / ]; then
        log "killing leftover slurmstepd $p"
        kill -9 "$p" 2>/dev/null
    fi
done
rm -f "$LAB/spool/${HOST}"_*.[0-9]*

# 4. shared helpers, only if we started them and nobody else needs them
others=$(ls "$STATE_DIR"/*.json 2>/dev/null | tr '\n' ' ')
if [ -n "$others" ]; then
    log "other labs are up ($others): leaving munged and rsyslogd running"
else
    [ -f "$LAB/run/munged.started-by-lab" ] && stop_pidfile munged /run/munge/munged.pid 10
    rm -f "$LAB/run/munged.started-by-lab"
    stop_pidfile rsyslogd "$LAB/run/rsyslogd.pid" 10
fi
log "lab 'host' is down"
