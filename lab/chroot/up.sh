#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Bring up a chroot lab node: up.sh trixie|sid [options]. Idempotent; every wait is bounded.
#
#   mounts  : /proc (proc), /sys (rbind, rslave: cgroup v1 hierarchies included),
#             /dev (private tmpfs + device nodes, so /dev/log is the chroot's own),
#             /dev/pts (new devpts instance), /run (private tmpfs),
#             /opt/slurm-adopt (read-only bind of the repo's roles/adopt_module/files)
#   daemons : syslog sink, munged, slurmctld, slurmd -N <node>, sshd-lab-plain, sshd-lab-c,
#             sshd-lab-py (ports per release: common.sh)
#   output  : /run/slurm-adopt-lab/<release>.json
# Options: --no-build (fail instead of running build.sh), --restart (down.sh first).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LAB_RELEASE=${1:-}
shift || true
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
# shellcheck source=../close_lock_fds.sh
. "$HERE/../close_lock_fds.sh"

DO_BUILD=1
RESTART=0
for a in "$@"; do
    case $a in
        --no-build) DO_BUILD=0 ;;
        --restart) RESTART=1 ;;
        *) die "unknown option $a" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "must run as root"
lab_lock
[ $RESTART = 1 ] && "$HERE/down.sh" "$LAB_RELEASE"
T0=$(date +%s)

MODULE_SRC=${SLURM_ADOPT_MODULE_DIR:-$REPO/roles/adopt_module/files}
CTLHOST=$(hostname -s)
CHENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$BUILD_ID" ] && [ -x "$ROOT/usr/sbin/slurmd" ]; then
    :
elif [ $DO_BUILD = 1 ]; then
    # An outdated root that is up must come down before build.sh may replace it.
    if [ -n "$(mounts_under_root)" ] || [ -n "$(pids_in_root)" ]; then "$HERE/down.sh" "$LAB_RELEASE"; fi
    "$HERE/build.sh" "$LAB_RELEASE"
else
    die "chroot not built; run lab/$LAB_RELEASE/build.sh"
fi

inroot() { chroot "$ROOT" "${CHENV[@]}" "$@"; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll every 0.2 s.
wait_until() {
    local limit=$1 what=$2 end
    shift 2
    end=$(( $(date +%s) + limit ))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$end" ]; then
            log "timed out after ${limit}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}

# ------------------------------------------------------------------ mounts
is_mnt() { mountpoint -q "$1"; }

is_mnt "$ROOT/proc" || mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
if ! is_mnt "$ROOT/sys"; then
    mount --rbind /sys "$ROOT/sys"
    # Slave: host mount events still propagate in, nothing done below ROOT/sys propagates out.
    mount --make-rslave "$ROOT/sys"
fi
if ! is_mnt "$ROOT/dev"; then
    mount -t tmpfs -o mode=0755,size=16m,nosuid "lab-$LAB_RELEASE-dev" "$ROOT/dev"
    d=$ROOT/dev
    mknod -m 666 "$d/null" c 1 3
    mknod -m 666 "$d/zero" c 1 5
    mknod -m 666 "$d/full" c 1 7
    mknod -m 666 "$d/random" c 1 8
    mknod -m 666 "$d/urandom" c 1 9
    mknod -m 666 "$d/tty" c 5 0
    mkdir -m 0755 "$d/pts"
    mkdir -m 1777 "$d/shm" "$d/mqueue"
    ln -s pts/ptmx "$d/ptmx"
    ln -s /proc/self/fd "$d/fd"
    ln -s /proc/self/fd/0 "$d/stdin"
    ln -s /proc/self/fd/1 "$d/stdout"
    ln -s /proc/self/fd/2 "$d/stderr"
fi
is_mnt "$ROOT/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 "lab-$LAB_RELEASE-devpts" "$ROOT/dev/pts"
if ! is_mnt "$ROOT/run"; then
    mount -t tmpfs -o mode=0755,size=64m,nosuid,nodev "lab-$LAB_RELEASE-run" "$ROOT/run"
    mkdir -p "$ROOT/run/lock" "$ROOT/run/sshd" "$ROOT/run/munge"
    chmod 1777 "$ROOT/run/lock"
    chmod 0755 "$ROOT/run/sshd"
fi
mkdir -p "$ROOT$MODULE_DIR_IN_ROOT"
# Re-bind when a different checkout runs up.sh (the source is recorded in the chroot's /run)
# or when the bound directory was deleted meanwhile (mountinfo root ends in //deleted).
if is_mnt "$ROOT$MODULE_DIR_IN_ROOT"; then
    bound=$(awk -v m="$ROOT$MODULE_DIR_IN_ROOT" '$5 == m { r = $4 } END { print r }' /proc/self/mountinfo)
    if [ "$(cat "$ROOT/run/lab-module-src" 2>/dev/null)" != "$MODULE_SRC" ] || [[ $bound == *//deleted ]]; then
        log "re-binding $MODULE_DIR_IN_ROOT to $MODULE_SRC (was ${bound:-?})"
        umount "$ROOT$MODULE_DIR_IN_ROOT" || umount -l "$ROOT$MODULE_DIR_IN_ROOT"
    fi
fi
if ! is_mnt "$ROOT$MODULE_DIR_IN_ROOT"; then
    if [ -d "$MODULE_SRC" ]; then
        mount --bind "$MODULE_SRC" "$ROOT$MODULE_DIR_IN_ROOT"
        mount -o remount,bind,ro "$ROOT$MODULE_DIR_IN_ROOT"
        echo "$MODULE_SRC" > "$ROOT/run/lab-module-src"
    else
        log "WARNING: $MODULE_SRC missing; $MODULE_DIR_IN_ROOT stays empty (py service will fail)"
    fi
fi
[ -f "$MODULE_SRC/pam_slurm_adopt.py" ] || log "note: $MODULE_SRC/pam_slurm_adopt.py does not exist yet"
# Byte-compile the package for the chroot's Python, as the adopt_module role does on a
# node: pam_python runs with dont_write_bytecode, so without these .pyc files every login
# would compile the whole package from source. The bind above is read-only, so compile
# through a temporary read-write bind; -d keeps the in-chroot path in the code objects.
if [ -d "$MODULE_SRC/slurm_adopt" ]; then
    tmpbind=$ROOT/run/lab-module-compile
    mkdir -p "$tmpbind"
    if mount --bind "$MODULE_SRC" "$tmpbind"; then
        chroot "$ROOT" /usr/bin/python3 -m compileall -q -d "$MODULE_DIR_IN_ROOT/slurm_adopt" \
            /run/lab-module-compile/slurm_adopt >/dev/null || log "WARNING: compileall in the chroot failed"
        umount "$tmpbind"
    fi
    rmdir "$tmpbind" 2>/dev/null || true
fi

# ------------------------------------------------------------------ users (same uid/gid as host)
# Same scheme as lab/host/up.sh, so whichever lab is brought up first, the host ends up
# with the same accounts: fixed uid/gid if free (user private groups), admin group 30000.
declare -A WANT_UID=([labalice]=30001 [labbob]=30002 [labcarol]=30003 [labdave]=30004 [labadmin]=30005)
ADMIN_GID=30000
if ! getent group "$ADMIN_GROUP" >/dev/null; then
    log "creating host group $ADMIN_GROUP (absent on the host)"
    if getent group "$ADMIN_GID" >/dev/null; then groupadd "$ADMIN_GROUP"; else groupadd -g "$ADMIN_GID" "$ADMIN_GROUP"; fi \
        || getent group "$ADMIN_GROUP" >/dev/null || die "cannot create host group $ADMIN_GROUP"
fi
for u in $LAB_USERS; do
    getent passwd "$u" >/dev/null && continue
    args=(-m -s /bin/bash -c "slurm-adopt lab user" -U)
    uid=${WANT_UID[$u]}
    if ! getent passwd "$uid" >/dev/null && ! getent group "$uid" >/dev/null; then args+=(-u "$uid"); fi
    [ "$u" = labadmin ] && args+=(-G "$ADMIN_GROUP")
    log "creating host user $u (absent on the host)"
    useradd "${args[@]}" "$u" || getent passwd "$u" >/dev/null || die "cannot create host user $u"
    usermod -p '*' "$u"
done

# Mirror a host group into the chroot with the same gid.
mirror_group() {
    local name=$1 gid=$2 cur
    cur=$(inroot getent group "$name" | cut -d: -f3 || true)
    if [ -z "$cur" ]; then
        inroot groupadd -g "$gid" "$name"
    elif [ "$cur" != "$gid" ]; then
        inroot groupmod -g "$gid" "$name"
    fi
}
mkdir -p "$KEYS_DIR"; chmod 700 "$KEYS_DIR"
for u in $LAB_USERS; do
    IFS=: read -r _ _ uid gid _ _ _ < <(getent passwd "$u")
    gname=$(getent group "$gid" | cut -d: -f1)
    mirror_group "$gname" "$gid"
    cur=$(inroot getent passwd "$u" | cut -d: -f3 || true)
    if [ -z "$cur" ]; then
        inroot useradd -u "$uid" -g "$gid" -m -d "/home/$u" -s /bin/bash "$u"
    elif [ "$cur" != "$uid" ] || [ "$(inroot id -g "$u")" != "$gid" ]; then
        inroot usermod -u "$uid" -g "$gid" "$u"
    fi
    inroot usermod -p '*' "$u"     # not locked, no password: pubkey only
done
# Supplementary membership of the admin group, as on the host.
agid=$(getent group "$ADMIN_GROUP" | cut -d: -f3)
mirror_group "$ADMIN_GROUP" "$agid"
members=$(getent group "$ADMIN_GROUP" | cut -d: -f4)
for u in $LAB_USERS; do
    if [ "$(id -gn "$u")" = "$ADMIN_GROUP" ] || [[ ",$members," == *",$u,"* ]]; then
        inroot usermod -a -G "$ADMIN_GROUP" "$u"
    fi
done

# ssh keys: generated on the host, authorized and also present inside the chroot home
# (for ssh from inside a job, e.g. callerid tests through srun --overlap); root's too
# (the node tests log in as root: the module must leave root to the rest of the stack).
for u in $LAB_USERS root; do
    k=$KEYS_DIR/${u}_ed25519
    [ -s "$k" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@$LAB_RELEASE-lab" -f "$k"
    IFS=: read -r _ _ uid gid _ home _ < <(inroot getent passwd "$u")
    s=$ROOT$home/.ssh
    mkdir -p "$s"
    install -m 600 "$k" "$s/id_ed25519"
    install -m 644 "$k.pub" "$s/id_ed25519.pub"
    install -m 600 "$k.pub" "$s/authorized_keys"
    printf 'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n' > "$s/config"
    chmod 600 "$s/config"; chmod 700 "$s"
    chown -R "$uid:$gid" "$s"
    chown "$uid:$gid" "$ROOT$home"
done

# ------------------------------------------------------------------ configuration
subst() {
    sed -e "s|@CTLHOST@|$CTLHOST|g" -e "s|@NODENAME@|$NODENAME|g" \
        -e "s|@SLURMCTLD_PORT@|$SLURMCTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@SPOOL_DIR@|$SPOOL_DIR|g" -e "s|@STATESAVE_DIR@|$STATESAVE_DIR|g" \
        -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@RELEASE@|$DESCRIPTION|g" "$@"
}
# put_file DST MODE < content: atomic replace if different; returns 0 if it changed.
put_file() {
    local dst=$1 mode=$2 tmp
    tmp=$(mktemp "$dst.XXXXXX")
    cat > "$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$dst" ] && cmp -s "$tmp" "$dst"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$dst"
}
mkdir -p "$ROOT/etc/slurm" "$ROOT$SPOOL_DIR" "$ROOT$STATESAVE_DIR" "$ROOT/var/log/slurm"
SLURM_CHANGED=0
subst "$HERE/templates/slurm.conf.in" | put_file "$ROOT/etc/slurm/slurm.conf" 644 && SLURM_CHANGED=1
put_file "$ROOT/etc/slurm/cgroup.conf" 644 < "$HERE/templates/cgroup.conf" && SLURM_CHANGED=1

declare -A SSHD_CHANGED=()
for v in plain c py; do
    case $v in plain) port=$SSH_PORT_PLAIN ;; c) port=$SSH_PORT_C ;; py) port=$SSH_PORT_PY ;; esac
    svc=sshd-lab-$v
    SSHD_CHANGED[$v]=0
    sed -e "s|@VARIANT@|$v|g" -e "s|@PORT@|$port|g" -e "s|@SERVICE@|$svc|g" \
        -e "s|@RELEASE@|$DESCRIPTION|g" "$HERE/templates/sshd_config.in" | put_file "$ROOT/etc/ssh/sshd_config_lab_$v" 644 && SSHD_CHANGED[$v]=1
    # Restores the default stack (a test may have edited the adopt line; we hold the lock).
    put_file "$ROOT/etc/pam.d/$svc" 644 < "$HERE/templates/pam.d/$svc" || true
    ln -sfn /usr/sbin/sshd "$ROOT/usr/local/sbin/$svc"
done
if grep -l pam_systemd "$ROOT"/etc/pam.d/common-* 2>/dev/null; then
    die "pam_systemd is referenced by the chroot's common-* PAM files"
fi
[ -s "$ROOT/etc/ssh/lab_host_ed25519_key" ] || \
    inroot ssh-keygen -q -t ed25519 -N '' -C "$LAB_RELEASE-lab-host" -f /etc/ssh/lab_host_ed25519_key
# pam_env in the stack reads it; Debian would have it from the locales package.
[ -e "$ROOT/etc/default/locale" ] || echo 'LANG=C.UTF-8' > "$ROOT/etc/default/locale"
install -m 755 "$HERE/syslog_sink.py" "$ROOT/usr/local/sbin/lab-syslog-sink"
if [ ! -s "$ROOT/etc/munge/munge.key" ]; then
    inroot mungekey -c -k /etc/munge/munge.key
    inroot chown munge:munge /etc/munge/munge.key
fi

# ------------------------------------------------------------------ daemons
# alive PIDFILE_IN_ROOT: true if the pid in that file runs inside ROOT.
alive() {
    local f=$ROOT$1 pid
    [ -s "$f" ] || return 1
    pid=$(tr -dc 0-9 < "$f")
    [ -n "$pid" ] && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ]
}
# start CMD...: run detached (own session, no controlling tty, no host environment).
start() { setsid chroot "$ROOT" "${CHENV[@]}" "$@" </dev/null >/dev/null 2>&1 9>&- & }
# Listening check without connecting (a bare connect counts as a penalty in OpenSSH 10).
port_open() { awk -v p="$(printf '%04X' "$1")" '$2 == "0100007F:" p && $4 == "0A" { f=1 } END { exit !f }' /proc/net/tcp; }

if ! alive /run/lab-syslog.pid; then
    # Fresh file per sink start, so old runs cannot match a reader's pattern.
    [ -s "$ROOT$SYSLOG_FILE_IN_ROOT" ] && mv -f "$ROOT$SYSLOG_FILE_IN_ROOT" "$ROOT$SYSLOG_FILE_IN_ROOT.1"
    start /usr/local/sbin/lab-syslog-sink --socket /dev/log --out "$SYSLOG_FILE_IN_ROOT" --pidfile /run/lab-syslog.pid
    wait_until 15 "syslog sink" alive /run/lab-syslog.pid || die "syslog sink did not start"
fi

if ! alive /run/munge/munged.pid; then
    inroot chown munge:munge /run/munge
    rm -f "$ROOT/run/munge/munge.socket.2"
    setsid chroot --userspec=munge:munge "$ROOT" "${CHENV[@]}" /usr/sbin/munged </dev/null >/dev/null 2>&1 9>&- || die "munged failed"
    wait_until 15 "munged" alive /run/munge/munged.pid || die "munged did not start"
fi
wait_until 15 "munge round trip" bash -c "chroot '$ROOT' munge -n | chroot '$ROOT' unmunge" || die "munge does not work"

# stop_pidfile PIDFILE_IN_ROOT: TERM the daemon (if it runs in ROOT), wait up to 10 s.
stop_pidfile() {
    local pid
    alive "$1" || return 0
    pid=$(tr -dc 0-9 < "$ROOT$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "/proc/$pid" ] || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}
if [ $SLURM_CHANGED = 1 ] && alive /run/slurmctld.pid; then
    log "Slurm configuration changed: restarting slurmctld and slurmd"
    stop_pidfile /run/slurmd.pid
    stop_pidfile /run/slurmctld.pid
fi
if ! alive /run/slurmctld.pid; then
    # -c: start from a clean job state each time the controller is (re)started.
    start /usr/sbin/slurmctld -c -i
    wait_until 30 "slurmctld" alive /run/slurmctld.pid || { tail -n 20 "$ROOT/var/log/slurm/slurmctld.log" >&2; die "slurmctld did not start"; }
fi
wait_until 30 "slurmctld responding" inroot scontrol ping || { tail -n 20 "$ROOT/var/log/slurm/slurmctld.log" >&2; die "slurmctld not responding"; }

# Sockets of stepds that died without cleanup (see prune_stale_sockets.py).
python3 "$HERE/prune_stale_sockets.py" "$ROOT$SPOOL_DIR" "$NODENAME" >&2 || true
if ! alive /run/slurmd.pid; then
    start /usr/sbin/slurmd -N "$NODENAME"
    wait_until 30 "slurmd" alive /run/slurmd.pid || { tail -n 20 "$ROOT/var/log/slurm/slurmd.log" >&2; die "slurmd did not start"; }
fi
node_ready() { inroot sinfo -h -n "$NODENAME" -o %t | grep -Eq '^(idle|mix|alloc)$'; }
if ! wait_until 60 "node $NODENAME idle" node_ready; then
    inroot scontrol update NodeName="$NODENAME" State=RESUME >/dev/null 2>&1 || true
    wait_until 30 "node $NODENAME idle after resume" node_ready || {
        inroot sinfo -N -l >&2; tail -n 20 "$ROOT/var/log/slurm/slurmd.log" >&2; die "node not ready"; }
fi

for v in plain c py; do
    case $v in plain) port=$SSH_PORT_PLAIN ;; c) port=$SSH_PORT_C ;; py) port=$SSH_PORT_PY ;; esac
    svc=sshd-lab-$v
    if [ "${SSHD_CHANGED[$v]}" = 1 ] && alive "/run/$svc.pid"; then
        log "$svc configuration changed: restarting it"
        stop_pidfile "/run/$svc.pid"
    fi
    if ! alive "/run/$svc.pid"; then
        inroot "/usr/local/sbin/$svc" -t -f "/etc/ssh/sshd_config_lab_$v" || die "$svc config test failed"
        start "/usr/local/sbin/$svc" -f "/etc/ssh/sshd_config_lab_$v"
        wait_until 15 "$svc pidfile" alive "/run/$svc.pid" || die "$svc did not start"
    fi
    wait_until 15 "$svc port $port" port_open "$port" || die "$svc not listening on $port"
done

# ------------------------------------------------------------------ state file
version=$(inroot sinfo -V | awk '{print $NF}')
mkdir -p "$STATE_DIR"
python3 - "$STATE_FILE" <<EOF
import json, os, sys
users = {"alice": "labalice", "bob": "labbob", "carol": "labcarol", "dave": "labdave", "admin": "labadmin"}
state = {
    "name": "$LAB_RELEASE",
    "slurm_version": "$version",
    "root": "$ROOT",
    "slurm_conf": "/etc/slurm/slurm.conf",
    "nodename": "$NODENAME",
    "spool_dir": "$SPOOL_DIR",
    "slurmd_port": $SLURMD_PORT,
    "ports": {"plain": $SSH_PORT_PLAIN, "c": $SSH_PORT_C, "py": $SSH_PORT_PY},
    "pam_services": {"plain": "sshd-lab-plain", "c": "sshd-lab-c", "py": "sshd-lab-py"},
    "pam_dir": "/etc/pam.d",
    "module_path": "$MODULE_DIR_IN_ROOT/pam_slurm_adopt.py",
    "users": users,
    "admin_group": "$ADMIN_GROUP",
    "ssh_keys": {u: "$KEYS_DIR/%s_ed25519" % u for u in list(users.values()) + ["root"]},
    "syslog": "$ROOT$SYSLOG_FILE_IN_ROOT",
    "cgroup_root": "/sys/fs/cgroup",
}
path = sys.argv[1]
with open(path + ".tmp", "w") as f:
    json.dump(state, f, indent=2)
    f.write("\n")
os.rename(path + ".tmp", path)
EOF
log "$LAB_RELEASE lab up (Slurm $version) in $(( $(date +%s) - T0 ))s; state: $STATE_FILE"
