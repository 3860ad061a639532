#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Bring up the fleet lab: four systemd containers on an internal podman
# network with real munge and Slurm 22.05 (Debian 12):
#
#   saf-ctl    (hostname ctl)    slurmctld
#   saf-node1  (hostname node1)  slurmd + sshd     compute
#   saf-node2  (hostname node2)  slurmd + sshd     compute
#   saf-login  (hostname login)  sshd, no slurmd   login
#
# Users on every node (same uids, key-only ssh between the nodes): fleetalice,
# fleetbob (users), fleetadmin (group fleetwheel: the admin group), fleetops
# (what Ansible connects as: sudo without a password, not an admin, named only
# in an ssh config as sites do, never in ansible_user).  Nodes are stock
# Debian otherwise: pam_systemd is in common-session, logind runs,
# /etc/pam.d/sshd is Debian's, and slurm.conf (one file on a volume shared by
# all four, as over NFS) lacks PrologFlags=Contain and task/cgroup: the
# rollout (playbooks/site.yml) has real work.
#
# Idempotent: containers that exist and answer are kept (FLEET_FRESH=1 to
# recreate them).  Writes lab/fleet/.state/inventory.yml for ansible-playbook.
#
# Environment: FLEET_IMAGE (default: built by lab/images/build.sh bookworm),
#              FLEET_FRESH=1, FLEET_WAIT (seconds per wait, default 90).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lab/fleet/common.sh
. "$HERE/common.sh"

T0=$SECONDS
mkdir -p "$STATE"
chmod 700 "$STATE"

if [ -z "${FLEET_IMAGE:-}" ]; then
    FLEET_IMAGE=$(bash "$REPO/lab/images/build.sh" bookworm | tail -n1)
fi
log "image $FLEET_IMAGE"

# ----------------------------------------------------------------- network, volume
if ! podman network exists "$NET"; then
    podman network create --internal "$NET" >/dev/null
    log "created internal network $NET"
fi
if [ "${FLEET_FRESH:-0}" = 1 ]; then
    podman rm -f -t 2 "${CONTAINERS[@]}" >/dev/null 2>&1 || true
    podman volume rm -f "$SLURM_VOLUME" >/dev/null 2>&1 || true
    rm -f "$STATE/baseline.json"     # the fleet tests' record of the stock nodes
fi
podman volume exists "$SLURM_VOLUME" || podman volume create "$SLURM_VOLUME" >/dev/null

# ----------------------------------------------------------------- secrets
[ -s "$STATE/munge.key" ] || { dd if=/dev/urandom of="$STATE/munge.key" bs=1024 count=1 status=none; chmod 600 "$STATE/munge.key"; }
for u in "${USERS[@]}" root; do
    [ -s "$STATE/$u" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@fleet" -f "$STATE/$u"
done

# ----------------------------------------------------------------- containers
start_container() {
    local c=$1 h=${HOSTS[$1]}
    if [ "$(podman inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ]; then
        return 0
    fi
    podman rm -f -t 2 "$c" >/dev/null 2>&1 || true
    podman run -d --name "$c" --hostname "$h" --network "$NET" --network-alias "$h" \
        --label slurm-adopt-lab=fleet \
        --runtime runc --privileged --systemd=always --cgroupns=private \
        -v "$SLURM_VOLUME:/etc/slurm" \
        --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        "$FLEET_IMAGE" >/dev/null
    log "started $c ($h)"
}
for c in "${CONTAINERS[@]}"; do start_container "$c"; done
for c in "${CONTAINERS[@]}"; do
    # shellcheck disable=SC2016  # expanded by the container's sh
    wait_for "$FLEET_WAIT" podman exec "$c" sh -c \
        's=$(systemctl is-system-running 2>/dev/null); [ "$s" = running ] || [ "$s" = degraded ]' \
        || die "$c: systemd did not finish booting"
done

# ----------------------------------------------------------------- /etc/hosts
# aardvark-dns resolves the aliases; /etc/hosts as well so that slurmd's
# reverse lookups and `hostname -f` are instant and stable.
HOSTS_LINES=""
for c in "${CONTAINERS[@]}"; do
    ip=$(podman inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$c")
    HOSTS_LINES+="$ip ${HOSTS[$c]}"$'\n'
done
printf '%s' "$HOSTS_LINES" > "$STATE/hosts"

# ----------------------------------------------------------------- config files
{ echo '# fleet lab (lab/fleet/up.sh)'; lab_slurm_conf fleet 'node[1-2]' task/affinity "${FLEET_PROLOGFLAGS:-}"; } \
    > "$STATE/slurm.conf"
cat > "$STATE/cgroup.conf" <<'EOF'
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=no
EOF

# ----------------------------------------------------------------- per node
setup_node() {
    local c=$1 h=${HOSTS[$1]}
    podman cp "$STATE/munge.key" "$c:/etc/munge/munge.key"
    podman cp "$STATE/hosts" "$c:/tmp/fleet-hosts"
    podman cp "$STATE/root.pub" "$c:/tmp/fleet-root.pub"
    for u in "${USERS[@]}"; do
        podman cp "$STATE/$u" "$c:/tmp/fleet-key-$u"
        podman cp "$STATE/$u.pub" "$c:/tmp/fleet-key-$u.pub"
    done
    podman exec -i -e FLEET_HOST="$h" -e FLEET_CHANGED="$CHANGED" "$c" bash -s <<'EOS'
set -eu
h=$FLEET_HOST
changed=$FLEET_CHANGED
# /etc/hosts: ours first, podman's own entries kept
grep -v -E ' (ctl|node1|node2|login)$' /etc/hosts > /tmp/hosts.new || true
cat /tmp/fleet-hosts >> /tmp/hosts.new
cat /tmp/hosts.new > /etc/hosts
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
getent group fleetwheel >/dev/null || groupadd -g 31000 fleetwheel
mk() { getent passwd "$1" >/dev/null || useradd -m -s /bin/bash -u "$2" ${3:+-G "$3"} "$1"; }
mk fleetalice 31001
mk fleetbob 31002
mk fleetadmin 31005 fleetwheel
mk fleetops 31006
printf 'fleetops ALL=(ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/fleetops
chmod 440 /etc/sudoers.d/fleetops
for u in fleetalice fleetbob fleetadmin fleetops; do
    d=/home/$u/.ssh
    install -d -o "$u" -g "$u" -m 700 "$d"
    install -o "$u" -g "$u" -m 600 "/tmp/fleet-key-$u" "$d/id_ed25519"
    install -o "$u" -g "$u" -m 644 "/tmp/fleet-key-$u.pub" "$d/id_ed25519.pub"
    install -o "$u" -g "$u" -m 600 "/tmp/fleet-key-$u.pub" "$d/authorized_keys"
    rm -f "/tmp/fleet-key-$u" "/tmp/fleet-key-$u.pub"
done
# root on the login node can probe as the admin (the rollout's fresh ssh check)
install -d -m 700 /root/.ssh
install -m 600 /tmp/fleet-root.pub /root/.ssh/authorized_keys
rm -f /tmp/fleet-root.pub
printf 'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n' \
    > /etc/ssh/ssh_config.d/fleet-lab.conf
mkdir -p /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
chmod 755 /var/log/slurm
# Other labs on this machine kill daemons by name from the host (their pid
# filters cannot tell a container's munged from theirs): come back by itself.
for s in munge slurmd slurmctld ssh; do
    mkdir -p /etc/systemd/system/$s.service.d
    printf '[Service]\nRestart=always\nRestartSec=1\n' > /etc/systemd/system/$s.service.d/fleet-lab.conf
done
printf '[Unit]\nStartLimitIntervalSec=0\n' > /etc/systemd/system/munge.service.d/fleet-lab-limit.conf
systemctl daemon-reload
systemctl restart munge
role=compute
case $h in ctl) role=ctl ;; login) role=login ;; esac
if [ $role = ctl ]; then
    systemctl disable --now slurmd >/dev/null 2>&1 || true
    systemctl enable --now ssh >/dev/null 2>&1
    if [ $changed = 1 ] || ! systemctl is-active -q slurmctld; then systemctl restart slurmctld; fi
elif [ $role = login ]; then
    systemctl disable --now slurmd slurmctld >/dev/null 2>&1 || true
    systemctl enable --now ssh >/dev/null 2>&1
else
    systemctl disable --now slurmctld >/dev/null 2>&1 || true
    systemctl enable ssh slurmd >/dev/null 2>&1
    systemctl start ssh
    if [ $changed = 1 ]; then systemctl restart slurmd; fi
fi
echo "$role" > /etc/fleet-role
EOS
}
# one slurm.conf for all four (the shared volume)
podman cp "$STATE/slurm.conf" saf-ctl:/etc/slurm/slurm.conf.new
podman cp "$STATE/cgroup.conf" saf-ctl:/etc/slurm/cgroup.conf
CHANGED=$(podman exec saf-ctl sh -c 'set -e
    if cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf; then rm -f /etc/slurm/slurm.conf.new; echo 0
    else mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf; echo 1; fi
    rm -f /etc/slurm/slurm.conf.bak* /etc/slurm/slurm.conf.*~ 2>/dev/null || true
    chmod 644 /etc/slurm/slurm.conf /etc/slurm/cgroup.conf')
for c in "${CONTAINERS[@]}"; do setup_node "$c"; done
podman cp "$STATE/fleetadmin" saf-login:/root/.ssh/fleetadmin_key
podman exec saf-login chmod 600 /root/.ssh/fleetadmin_key

wait_for "$FLEET_WAIT" podman exec saf-ctl scontrol ping || die "slurmctld does not answer"
for c in saf-node1 saf-node2; do
    podman exec "$c" sh -c 'systemctl is-active -q slurmd || systemctl restart slurmd'
done
# nodes that were down (e.g. a previous run) come back
wait_for "$FLEET_WAIT" sh -c "podman exec saf-ctl sinfo -h -N -o '%N %T' | grep -c -E ' (idle|mixed|allocated|drained|draining)' | grep -qx 2" \
    || { podman exec saf-ctl sinfo -N; die "nodes did not register with slurmctld"; }

# nodes drained by anything but the drift check (e.g. an earlier bad config) resume
podman exec saf-ctl sh -c "sinfo -h -N -t drain,drained,draining -o '%N|%E'" | while IFS='|' read -r n reason; do
    case $reason in slurm-adopt:*) ;; *) podman exec saf-ctl scontrol update NodeName="$n" State=RESUME ;; esac
done

# ----------------------------------------------------------------- inventory
# As a site would write it: its own group names (given to the collection in
# group_vars/all), and the user Ansible connects as only in an ssh config
# (no ansible_user anywhere).
ip_of() { podman inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }
{
    printf 'Host *\n  User fleetops\n  IdentityFile %s/fleetops\n  IdentitiesOnly yes\n' "$STATE"
    printf '  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n'
} > "$STATE/ssh_config_ansible"
if [ "${FLEET_CONNECTION:-ssh}" = podman ]; then
    CONN="    ansible_connection: containers.podman.podman
    ansible_user: root
    slurm_adopt_probe: false"
    hostvars() { echo "        $1:"; }
else
    # This machine reaches its own containers on the internal network through
    # the bridge: real ssh, as in production (and much faster than podman exec).
    CONN="    ansible_connection: ssh
    ansible_ssh_common_args: -F $STATE/ssh_config_ansible
    ansible_ssh_pipelining: true"
    hostvars() { printf '        %s:\n          ansible_host: %s\n' "$1" "$(ip_of "$1")"; }
fi
{
    printf -- '---\n# fleet lab inventory (written by lab/fleet/up.sh)\nall:\n  vars:\n%s\n' "$CONN"
    printf '    ansible_python_interpreter: /usr/bin/python3\n    fleet_lab_state: %s\n  children:\n' "$STATE"
    printf '    hpc_controller:\n      hosts:\n%s\n' "$(hostvars saf-ctl)"
    printf '    hpc_compute:\n      hosts:\n%s\n%s\n' "$(hostvars saf-node1)" "$(hostvars saf-node2)"
    printf '    hpc_login:\n      hosts:\n%s\n' "$(hostvars saf-login)"
} > "$STATE/inventory.yml"
# ssh config for testinfra (pytest --ssh-config) and for people
printf 'Host *\n  User root\n  IdentityFile %s/root\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
    "$STATE" > "$STATE/ssh_config"
mkdir -p "$STATE/group_vars"
sed "s#@STATE@#$STATE#g" "$HERE/group_vars.yml" > "$STATE/group_vars/all.yml"
# per-node settings (node1: the service interface)
rm -rf "$STATE/host_vars" && cp -r "$HERE/host_vars" "$STATE/host_vars"

log "up in $((SECONDS - T0))s: $(podman exec saf-ctl sinfo -h -N -o '%N=%T' | tr '\n' ' ')"
