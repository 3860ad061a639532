#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Bring up the single-node host lab: munge, a syslog sink, a self-contained
# Slurm 22.05 (slurmctld + slurmd, own slurm.conf under the lab dir), test
# users with ssh keys, and four sshd instances on 127.0.0.1 with their own
# PAM services (plain / SchedMD's C pam_slurm_adopt / our pam_python module /
# "floor": pam_python with a module that does nothing, for the benchmark).
#
# Idempotent: anything already running and configured identically is left
# alone, so a second run takes about a second. Every wait is bounded.
#
# Environment:
#   MODULE_PATH  Python adopt module loaded by the sshd-lab-py stack
#                (default: <repo>/roles/adopt_module/files/pam_slurm_adopt.py;
#                it may not exist yet, up.sh works anyway).
#   LAB_WAIT     seconds to wait for each daemon (default 30).
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../close_lock_fds.sh
. "$REPO/lab/close_lock_fds.sh"
LAB=/var/lib/slurm-adopt-lab/host
STATE_DIR=/run/slurm-adopt-lab
STATE_FILE=$STATE_DIR/host.json
MODULE_PATH=${MODULE_PATH:-$REPO/roles/adopt_module/files/pam_slurm_adopt.py}
LAB_WAIT=${LAB_WAIT:-30}
HOST=$(hostname -s)
SLURM_CONF=$LAB/etc/slurm.conf
SYSPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Clean environment for every daemon we start (nothing from the caller leaks
# into sshd / pam_python / slurmd).
DAEMON_ENV=(env -i PATH="$SYSPATH" LANG=C.UTF-8 SLURM_CONF="$SLURM_CONF")
export SLURM_CONF PATH="$SYSPATH:$PATH"

SLURMCTLD_PORT=6817
SLURMD_PORT=6818
KINDS=(plain c py floor)
declare -A SSH_PORT=([plain]=2201 [c]=2202 [py]=2203 [floor]=2204)
# The floor service loads this do-nothing module through pam_python.
FLOOR_MODULE=$REPO/lab/host/pam_floor.py
# name -> fixed uid (used only if free; otherwise useradd picks one)
USERS=(labalice labbob labcarol labdave labadmin)
declare -A WANT_UID=([labalice]=30001 [labbob]=30002 [labcarol]=30003 [labdave]=30004 [labadmin]=30005)
ADMIN_GROUP=labwheel
ADMIN_GID=30000
SYSLOG_FILE=/var/log/auth.log

T0=$(date +%s.%N)
log() { printf 'up.sh: %s\n' "$*"; }
die() { printf 'up.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local secs=$1; shift 2  # $2 only documents the call site
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
}

# write_if_changed PATH MODE: content from stdin; returns 0 if the file changed.
write_if_changed() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$path"
    return 0
}

# alive PID: running and not a zombie (PID 1 here may reap orphans late).
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

dead() { ! alive "$1"; }

pid_alive() { # pidfile
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid"
}

port_listening() { ss -Hltn "sport = :$1" | grep -q .; }

[ "$(id -u)" = 0 ] || die "must run as root"
for b in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch srun /usr/sbin/sshd ssh-keygen rsyslogd ss useradd; do
    command -v "$b" >/dev/null || die "missing $b: run lab/host/install.sh first"
done
[ -e /lib/security/pam_slurm_adopt.so ] || [ -e /lib/x86_64-linux-gnu/security/pam_slurm_adopt.so ] \
    || die "pam_slurm_adopt.so missing: run lab/host/install.sh"
[ -e /lib/security/pam_python.so ] || [ -e /lib/x86_64-linux-gnu/security/pam_python.so ] \
    || die "pam_python.so missing: run lab/host/install.sh"

mkdir -p "$LAB"/{etc,bin,spool,state,log,run,authorized_keys} "$STATE_DIR" /run/sshd
install -d -m 700 "$LAB/keys"
chmod 755 /var/lib/slurm-adopt-lab "$LAB"

# ---------------------------------------------------------------- munge
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "munge: already running"
else
    if [ ! -s /etc/munge/munge.key ]; then
        log "munge: creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    log "munge: starting munged"
    runuser -u munge -- "${DAEMON_ENV[@]}" /usr/sbin/munged --force
    touch "$LAB/run/munged.started-by-lab"   # so down.sh may stop it
    wait_for "$LAB_WAIT" munge munge_ok || die "munged did not come up (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- syslog
# PAM modules log with syslog(LOG_AUTHPRIV); we need that in a file. If
# something already listens on /dev/log we assume Debian's layout
# (auth,authpriv.* -> /var/log/auth.log); otherwise we start our own
# rsyslogd with a lab config that writes exactly that.
syslog_ok() { logger --socket-errors=on -u /dev/log -p authpriv.debug -t slurm-adopt-lab "probe" 2>/dev/null; }
write_if_changed "$LAB/etc/rsyslog.conf" 644 <<EOF || true
# Generated by lab/host/up.sh (slurm-adopt host lab).
module(load="imuxsock" SysSock.RateLimit.Interval="0")
\$FileOwner root
\$FileGroup adm
\$FileCreateMode 0640
\$WorkDirectory $LAB/run
auth,authpriv.*              $SYSLOG_FILE
*.*;auth,authpriv.none       -$LAB/log/syslog
EOF
if [ -S /dev/log ] && syslog_ok; then
    if pid_alive "$LAB/run/rsyslogd.pid"; then
        log "syslog: lab rsyslogd already running"
    else
        log "syslog: /dev/log already served by another daemon; assuming $SYSLOG_FILE"
    fi
else
    rm -f /dev/log
    log "syslog: starting rsyslogd (auth,authpriv -> $SYSLOG_FILE)"
    setsid "${DAEMON_ENV[@]}" rsyslogd -f "$LAB/etc/rsyslog.conf" -i "$LAB/run/rsyslogd.pid" </dev/null
    wait_for "$LAB_WAIT" syslog syslog_ok || die "rsyslogd did not create /dev/log"
fi
touch "$SYSLOG_FILE"

# ---------------------------------------------------------------- slurm config
CONF_CHANGED=0
write_if_changed "$LAB/etc/slurm.conf" 644 <<EOF && CONF_CHANGED=1
# Generated by lab/host/up.sh (slurm-adopt host lab). Do not edit: re-run up.sh.
# Used only through SLURM_CONF=$SLURM_CONF; /etc/slurm is untouched.
ClusterName=adoptlab
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$LAB/state
SlurmdSpoolDir=$LAB/spool
SlurmctldPidFile=$LAB/run/slurmctld.pid
SlurmdPidFile=$LAB/run/slurmd.pid
SlurmctldLogFile=$LAB/log/slurmctld.log
SlurmdLogFile=$LAB/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity
TaskPluginParam=none
PrologFlags=contain
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MessageTimeout=10
# slurmd listens on IPv6 too: the callerid RPC of a login from ::1 reaches it
CommunicationParameters=EnableIPv6
KillWait=5
MinJobAge=30
InactiveLimit=0
SlurmctldTimeout=120
SlurmdTimeout=300
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=16 RealMemory=8000 State=UNKNOWN
PartitionName=lab Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
write_if_changed "$LAB/etc/cgroup.conf" 644 <<EOF && CONF_CHANGED=1
# Generated by lab/host/up.sh (slurm-adopt host lab).
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainCores=no
ConstrainDevices=no
EOF

# ---------------------------------------------------------------- users + keys
if ! getent group "$ADMIN_GROUP" >/dev/null; then
    if getent group "$ADMIN_GID" >/dev/null; then groupadd "$ADMIN_GROUP"; else groupadd -g "$ADMIN_GID" "$ADMIN_GROUP"; fi
fi
for u in "${USERS[@]}"; do
    if ! getent passwd "$u" >/dev/null; then
        args=(-m -s /bin/bash -c "slurm-adopt lab user")
        uid=${WANT_UID[$u]}
        if ! getent passwd "$uid" >/dev/null && ! getent group "$uid" >/dev/null; then
            args+=(-u "$uid" -U)
        else
            args+=(-U)
        fi
        [ "$u" = labadmin ] && args+=(-G "$ADMIN_GROUP")
        log "users: creating $u"
        useradd "${args[@]}" "$u"
    fi
    [ "$u" = labadmin ] && ! id -nG labadmin | grep -qw "$ADMIN_GROUP" && usermod -aG "$ADMIN_GROUP" labadmin
    # '*' = no password login, but not "locked" (keeps pubkey logins working
    # on any sshd build).
    if [ "$(getent shadow "$u" | cut -d: -f2)" != '*' ]; then usermod -p '*' "$u"; fi
    home=$(getent passwd "$u" | cut -d: -f6)
    [ -d "$home" ] || install -d -m 750 -o "$u" -g "$u" "$home"
    key=$LAB/keys/$u
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "$u@slurm-adopt-lab" -f "$key"
    fi
    chmod 600 "$key"
    write_if_changed "$LAB/authorized_keys/$u" 644 <"$key.pub" || true
    # A copy the user can read, for ssh run as the user inside a job (srun).
    install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
    if ! cmp -s "$key" "$home/.ssh/lab_id_ed25519"; then
        install -m 600 -o "$u" -g "$u" "$key" "$home/.ssh/lab_id_ed25519"
    fi
done

# root's key (the node tests log in as root: the module must leave root to the stack)
if [ ! -s "$LAB/keys/root" ] || [ ! -s "$LAB/keys/root.pub" ]; then
    rm -f "$LAB/keys/root" "$LAB/keys/root.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@slurm-adopt-lab" -f "$LAB/keys/root"
fi
chmod 600 "$LAB/keys/root"
write_if_changed "$LAB/authorized_keys/root" 644 <"$LAB/keys/root.pub" || true

# ---------------------------------------------------------------- PAM services
pam_common_head() {
    cat <<'EOF'
# Generated by lab/host/up.sh (slurm-adopt host lab). Modelled on Debian 12's
# /etc/pam.d/sshd, without pam_systemd/pam_selinux/pam_loginuid/pam_motd.
# The adopt line (the LAST account line) is rewritten by labctl.set_account_line().
@include common-auth
account    required     pam_nologin.so
@include common-account
EOF
}
pam_common_tail() {
    cat <<'EOF'
session    optional     pam_keyinit.so force revoke
@include common-session-noninteractive
session    required     pam_limits.so
session    required     pam_env.so
@include common-password
EOF
}
declare -A ADOPT_LINE=(
    [c]="account    required     pam_slurm_adopt.so service=sshd-lab-c"
    [py]="account    required     pam_python.so $MODULE_PATH service=sshd-lab-py"
    [floor]="account    required     pam_python.so $FLOOR_MODULE"
)
for kind in "${KINDS[@]}"; do
    { pam_common_head
      [ -n "${ADOPT_LINE[$kind]:-}" ] && printf '%s\n' "${ADOPT_LINE[$kind]}"
      pam_common_tail
    } | write_if_changed "/etc/pam.d/sshd-lab-$kind" 644 && log "pam: wrote /etc/pam.d/sshd-lab-$kind" || true
done
[ -e "$MODULE_PATH" ] || log "pam: note: $MODULE_PATH does not exist yet; sshd-lab-py logins will fail until it does"
# Byte-compile the package, as the adopt_module role does on a node: pam_python runs with
# dont_write_bytecode, so without .pyc files every login compiles it from source.
pkg=$(dirname "$MODULE_PATH")/slurm_adopt
if [ -d "$pkg" ]; then
    /usr/bin/python3 -m compileall -q "$pkg" >/dev/null || log "pam: WARNING: compileall $pkg failed"
fi

# ---------------------------------------------------------------- sshd x4
[ -s "$LAB/etc/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C slurm-adopt-lab-host -f "$LAB/etc/ssh_host_ed25519_key"
chmod 600 "$LAB/etc/ssh_host_ed25519_key"
for kind in "${KINDS[@]}"; do
    svc=sshd-lab-$kind
    port=${SSH_PORT[$kind]}
    bin=$LAB/bin/$svc
    pidf=$LAB/run/$svc.pid
    conf=$LAB/etc/$svc.conf
    [ "$(readlink "$bin" 2>/dev/null)" = /usr/sbin/sshd ] || ln -sfn /usr/sbin/sshd "$bin"
    changed=0
    write_if_changed "$conf" 644 <<EOF && changed=1
# Generated by lab/host/up.sh (slurm-adopt host lab). PAM service: $svc
Port $port
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $LAB/etc/ssh_host_ed25519_key
PidFile $pidf
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthenticationMethods publickey
PermitRootLogin prohibit-password
AuthorizedKeysFile $LAB/authorized_keys/%u
StrictModes yes
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
SyslogFacility AUTH
MaxStartups 64:30:128
MaxSessions 32
LoginGraceTime 30
SetEnv SLURM_CONF=$SLURM_CONF
Subsystem sftp internal-sftp
EOF
    if pid_alive "$pidf" && [ "$changed" = 0 ] && port_listening "$port"; then
        log "sshd: $svc already running on 127.0.0.1:$port"
        continue
    fi
    if pid_alive "$pidf"; then
        log "sshd: restarting $svc (config changed)"
        pid=$(cat "$pidf")      # read before the kill: sshd removes its pid file on exit
        kill "$pid" 2>/dev/null || true
        wait_for 10 "old $svc to exit" dead "$pid" || true
    fi
    port_listening "$port" && die "port $port is in use by something else: $(ss -Hltnp "sport = :$port")"
    "${DAEMON_ENV[@]}" "$bin" -t -f "$conf" || die "sshd config $conf is invalid"
    log "sshd: starting $svc on 127.0.0.1:$port"
    # sshd daemonizes itself; -E keeps its own log lines out of syslog.
    setsid "${DAEMON_ENV[@]}" "$bin" -f "$conf" -E "$LAB/log/$svc.log" </dev/null
    wait_for "$LAB_WAIT" "$svc" port_listening "$port" || die "$svc did not listen on $port (see $LAB/log/$svc.log)"
done

# ---------------------------------------------------------------- slurm daemons
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -1; }
node_ready() { case "$(node_state)" in idle|mixed|allocated) return 0;; *) return 1;; esac; }

if [ "$CONF_CHANGED" = 1 ]; then
    for d in slurmd slurmctld; do
        if pid_alive "$LAB/run/$d.pid"; then
            log "slurm: config changed, stopping $d"
            pid=$(cat "$LAB/run/$d.pid"); kill "$pid" 2>/dev/null || true
            wait_for 20 "$d exit" dead "$pid" || kill -9 "$pid" 2>/dev/null || true
        fi
    done
fi
if pid_alive "$LAB/run/slurmctld.pid" && ctld_ok; then
    log "slurm: slurmctld already running"
else
    port_listening "$SLURMCTLD_PORT" && die "port $SLURMCTLD_PORT in use by something else: $(ss -Hltnp "sport = :$SLURMCTLD_PORT")"
    log "slurm: starting slurmctld"
    setsid "${DAEMON_ENV[@]}" slurmctld -i </dev/null >>"$LAB/log/slurmctld.stdout" 2>&1
    wait_for "$LAB_WAIT" slurmctld ctld_ok || die "slurmctld not responding after ${LAB_WAIT}s (see $LAB/log/slurmctld.log)"
fi
if pid_alive "$LAB/run/slurmd.pid"; then
    log "slurm: slurmd already running"
else
    port_listening "$SLURMD_PORT" && die "port $SLURMD_PORT in use by something else: $(ss -Hltnp "sport = :$SLURMD_PORT")"
    log "slurm: starting slurmd"
    setsid "${DAEMON_ENV[@]}" slurmd </dev/null >>"$LAB/log/slurmd.stdout" 2>&1
fi
if ! wait_for "$LAB_WAIT" "node $HOST ready" node_ready; then
    st=$(node_state)
    case "$st" in
        down*|drain*|*drain*)
            log "slurm: node is '$st', resuming"
            scontrol update nodename="$HOST" state=resume || true
            wait_for 10 "node resume" node_ready || true ;;
    esac
    node_ready || die "node $HOST not idle after ${LAB_WAIT}s (state '$(node_state)'; see $LAB/log/slurmd.log, $LAB/log/slurmctld.log)"
fi

# ---------------------------------------------------------------- smoke check
# One plain login proves sshd + keys + PAM stack basics.
out=$(timeout 20 ssh -p "${SSH_PORT[plain]}" -o BatchMode=yes -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
      -i "$LAB/keys/labalice" labalice@127.0.0.1 'id -un' 2>&1) \
    || die "plain ssh login as labalice failed: $out (see $LAB/log/sshd-lab-plain.log)"
[ "$out" = labalice ] || die "plain ssh login gave unexpected output: $out"

# ---------------------------------------------------------------- state file
SLURM_VERSION=$(sinfo -V | awk '{print $2}')
python3 - "$STATE_FILE" <<EOF
import json, os, sys
path = sys.argv[1]
users = {"alice": "labalice", "bob": "labbob", "carol": "labcarol", "dave": "labdave", "admin": "labadmin"}
state = {
    "name": "host",
    "slurm_version": "$SLURM_VERSION",
    "root": "/",
    "slurm_conf": "$SLURM_CONF",
    "nodename": "$HOST",
    "spool_dir": "$LAB/spool",
    "slurmd_port": $SLURMD_PORT,
    "ports": {"plain": ${SSH_PORT[plain]}, "c": ${SSH_PORT[c]}, "py": ${SSH_PORT[py]},
              "floor": ${SSH_PORT[floor]}},
    "pam_services": {"plain": "sshd-lab-plain", "c": "sshd-lab-c", "py": "sshd-lab-py",
                     "floor": "sshd-lab-floor"},
    "pam_dir": "/etc/pam.d",
    "module_path": "$MODULE_PATH",
    "users": users,
    "admin_group": "$ADMIN_GROUP",
    "ssh_keys": {u: "$LAB/keys/" + u for u in list(users.values()) + ["root"]},
    "syslog": "$SYSLOG_FILE",
    "cgroup_root": "/sys/fs/cgroup",
}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(state, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
EOF

T1=$(date +%s.%N)
log "lab 'host' is up (Slurm $SLURM_VERSION, node $HOST, ssh ports plain=${SSH_PORT[plain]} c=${SSH_PORT[c]} py=${SSH_PORT[py]} floor=${SSH_PORT[floor]}) in $(awk "BEGIN{printf \"%.1f\", $T1-$T0}")s; state: $STATE_FILE"
