#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The scale lab: the fleet lab's controller and N compute nodes (systemd
# containers running sshd, munge and slurmd; the fleet lab's node image with
# the per-node setup baked in: lab/fleet/scale/Containerfile), and the
# measurements of how the rollout's cost grows with N
# (lab/fleet/scale/scale_bench.py; docs/fleet.md, "Scale").
#
#   lab/fleet/scale.sh [run]       # `make scale`: for N in $SCALE_SIZES (2 4 8 16): a fresh
#                                  # lab of N compute nodes, site.yml (first run), site.yml again
#                                  # (must change nothing), healthcheck.yml; then the report
#                                  # (benchmarks/fleet_scale.json and .md) and the lab removed
#   lab/fleet/scale.sh up N        # a fresh lab with N compute nodes (and the controller)
#   lab/fleet/scale.sh bench N [scale_bench.py run options...]   # measure the lab that is up
#   lab/fleet/scale.sh report      # the report from $SCALE_RESULTS
#   lab/fleet/scale.sh down        # remove the lab (containers, network)
#
# Names are its own (containers saf-scale-ctl, saf-scale-node<i>, network
# saf-scale-net 10.89.250.0/24, label slurm-adopt-lab=scale): it never touches
# the fleet lab's saf-* containers, and both can be up at once.  Not part of
# `make test` (measured: 9 minutes for N = 2, 50 for N = 16 on 2 busy CPUs).
#
# Environment: SCALE_SIZES (default "2 4 8 16"), SCALE_CANARY (1), SCALE_BATCH
# ("100%": the canary, then every other node in one batch), SCALE_SUBNET
# (10.89.250), SCALE_STATE (lab/fleet/.state/scale), SCALE_RESULTS
# (build/fleet-scale), SCALE_BENCH_ARGS (more scale_bench.py run options),
# SCALE_KEEP=1 (keep the last lab up), FLEET_WAIT (seconds per wait, 90).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lab/fleet/common.sh
. "$HERE/common.sh"     # log, die, wait_for (the fleet lab's names are not used here)

PREFIX=saf-scale
SNET=$PREFIX-net
SUBNET=${SCALE_SUBNET:-10.89.250}
CTL=$PREFIX-ctl
LABEL=slurm-adopt-lab=scale
SSTATE=${SCALE_STATE:-$HERE/.state/scale}
RESULTS=${SCALE_RESULTS:-$REPO/build/fleet-scale}
SIZES=${SCALE_SIZES:-2 4 8 16}
CANARY=${SCALE_CANARY:-1}
BATCH=${SCALE_BATCH:-100%}
KEY_USERS=(fleetalice fleetbob fleetadmin fleetops root)
# lab/fleet/scale-pull.sh sources this file and sets these before `up`
UP_MOUNTS=()

slog() { printf 'scale: %s\n' "$*" >&2; }
ip_of_index() { echo "$SUBNET.$((10 + $1))"; }     # 0: the controller, i: node<i>
node_count() { podman ps -a --filter "label=$LABEL" --format '{{.Names}}' | grep -c "^$PREFIX-node" || true; }

# ----------------------------------------------------------------- image
image() {
    local base ctx tag
    base=$(bash "$REPO/lab/images/build.sh" bookworm | tail -n1)
    mkdir -p "$SSTATE"; chmod 700 "$SSTATE"
    [ -s "$SSTATE/munge.key" ] || { dd if=/dev/urandom of="$SSTATE/munge.key" bs=1024 count=1 status=none; chmod 600 "$SSTATE/munge.key"; }
    for u in "${KEY_USERS[@]}"; do
        [ -s "$SSTATE/$u" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@scale" -f "$SSTATE/$u"
    done
    tag=localhost/saf-scale-node:$( { podman image inspect -f '{{.Id}}' "$base"; cat "$HERE/scale/Containerfile" \
        "$SSTATE/munge.key" "$SSTATE"/*.pub; } | sha256sum | cut -c1-12)
    if ! podman image exists "$tag"; then
        ctx=$(mktemp -d /tmp/saf-scale-image.XXXXXX)
        mkdir -m 700 "$ctx/keys"
        for u in "${KEY_USERS[@]}"; do cp "$SSTATE/$u" "$SSTATE/$u.pub" "$ctx/keys/"; done
        cp "$SSTATE/munge.key" "$ctx/"
        slog "building $tag from $base"
        podman build -q --network none --build-arg BASE="$base" -f "$HERE/scale/Containerfile" -t "$tag" "$ctx" >&2 \
            || { rm -rf "$ctx"; die "image build failed"; }
        rm -rf "$ctx"
    fi
    echo "$tag"
}

# ----------------------------------------------------------------- down
down() {
    local ids s
    # Ansible's ssh masters (ControlPersist) of this lab: gone with it, so that
    # the next lab's containers, on the same addresses, get fresh connections
    for s in "$SSTATE"/cp/*/*; do
        if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit lab >/dev/null 2>&1 || true; fi
    done
    rm -rf "$SSTATE/cp"
    ids=$(podman ps -a -q --filter "label=$LABEL")
    # shellcheck disable=SC2086  # one id a word
    [ -z "$ids" ] || podman rm -f -t 2 $ids >/dev/null
    if podman network exists "$SNET"; then podman network rm "$SNET" >/dev/null; fi
    slog "down"
}

# ----------------------------------------------------------------- up
up() {
    local n=$1 img t0=$SECONDS i args=() name h
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 200 ]; then die "N must be 1..200, got '$n'"; fi
    img=${UP_IMAGE:-$(image)}
    down
    podman network create --internal --subnet "$SUBNET.0/24" "$SNET" >/dev/null
    # one /etc/slurm for all, as over NFS: a directory of this machine, bind-mounted
    rm -rf "$SSTATE/slurm-etc" "$SSTATE/group_vars"
    mkdir -p "$SSTATE/slurm-etc" "$SSTATE/group_vars"
    slurm_conf "$n" > "$SSTATE/slurm-etc/slurm.conf"
    printf 'CgroupPlugin=cgroup/v1\nConstrainCores=no\nConstrainRAMSpace=no\n' > "$SSTATE/slurm-etc/cgroup.conf"
    chmod 755 "$SSTATE/slurm-etc"; chmod 644 "$SSTATE/slurm-etc"/*
    args=(--add-host "ctl:$(ip_of_index 0)")
    for i in $(seq 1 "$n"); do args+=(--add-host "node$i:$(ip_of_index "$i")"); done
    for i in $(seq 0 "$n"); do
        if [ "$i" = 0 ]; then name=$CTL h=ctl; else name=$PREFIX-node$i h=node$i; fi
        podman run -d --name "$name" --hostname "$h" --network "$SNET" --ip "$(ip_of_index "$i")" "${args[@]}" \
            --label "$LABEL" --runtime runc --privileged --systemd=always --cgroupns=private \
            -v "$SSTATE/slurm-etc:/etc/slurm" "${UP_MOUNTS[@]}" \
            --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
            "$img" >/dev/null
    done
    slog "started $CTL and $n compute nodes"
    booted() {
        # shellcheck disable=SC2016  # expanded by the container's sh
        podman exec "$1" sh -c 's=$(systemctl is-system-running 2>/dev/null); [ "$s" = running ] || [ "$s" = degraded ]'
    }
    wait_for "$FLEET_WAIT" booted "$CTL" || die "$CTL: systemd did not finish booting"
    for i in $(seq 1 "$n"); do
        wait_for "$FLEET_WAIT" booted "$PREFIX-node$i" || die "$PREFIX-node$i: systemd did not finish booting"
    done
    wait_for "$FLEET_WAIT" podman exec "$CTL" scontrol ping || die "slurmctld does not answer"
    # a slurmd that started before slurmctld answered registers on its next try; help it
    idle() { [ "$(podman exec "$CTL" sinfo -h -N -t idle -o '%N' | sort -u | wc -l)" = "$n" ]; }
    if ! wait_for 30 idle; then
        for i in $(seq 1 "$n"); do podman exec "$PREFIX-node$i" systemctl restart slurmd; done
        wait_for "$FLEET_WAIT" idle || { podman exec "$CTL" sinfo -N; die "nodes did not register with slurmctld"; }
    fi
    inventory "$n"
    date +%s > "$SSTATE/lab-id"
    slog "up in $((SECONDS - t0))s: $(podman exec "$CTL" sinfo -h -o '%D nodes %T')"
}

slurm_conf() {   # the fleet lab's slurm.conf (lab/fleet/common.sh), N nodes
    echo '# scale lab (lab/fleet/scale.sh)'
    lab_slurm_conf scale "node[1-$1]" "${UP_TASKPLUGIN:-task/affinity}" "${UP_PROLOGFLAGS:-}"
}

inventory() {    # as lab/fleet/up.sh writes it: ssh from this machine, the user only in an ssh config
    local n=$1 i
    {
        printf 'Host *\n  User fleetops\n  IdentityFile %s/fleetops\n  IdentitiesOnly yes\n' "$SSTATE"
        printf '  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n'
    } > "$SSTATE/ssh_config_ansible"
    {
        printf -- '---\n# scale lab inventory (written by lab/fleet/scale.sh up %s)\nall:\n  vars:\n' "$n"
        printf '    ansible_connection: ssh\n    ansible_ssh_common_args: -F %s/ssh_config_ansible\n' "$SSTATE"
        printf '    ansible_python_interpreter: /usr/bin/python3\n  children:\n'
        printf '    hpc_controller:\n      hosts:\n        %s:\n          ansible_host: %s\n' "$CTL" "$(ip_of_index 0)"
        printf '    hpc_compute:\n      hosts:\n'
        for i in $(seq 1 "$n"); do
            printf '        %s-node%d:\n          ansible_host: %s\n' "$PREFIX" "$i" "$(ip_of_index "$i")"
        done
    } > "$SSTATE/inventory.yml"
    # the fleet lab's site settings, with the scale lab's batches
    sed -e "s#@STATE@#$SSTATE#g" -e "s#^slurm_adopt_canary: .*#slurm_adopt_canary: $CANARY#" \
        -e "s#^slurm_adopt_batch: .*#slurm_adopt_batch: \"$BATCH\"#" \
        "$HERE/group_vars.yml" > "$SSTATE/group_vars/all.yml"
    grep -q "^slurm_adopt_batch: \"$BATCH\"" "$SSTATE/group_vars/all.yml" || die "group_vars: batch not set"
}

bench() {
    local n=$1; shift
    [ "$(node_count)" = "$n" ] || die "the lab that is up has $(node_count) compute nodes, not $n (scale.sh up $n)"
    [ -x "$REPO/.venv/bin/ansible-playbook" ] || bash "$REPO/scripts/venv.sh" >/dev/null || die "scripts/venv.sh failed"
    # shellcheck disable=SC2086  # SCALE_BENCH_ARGS: options, one a word
    python3 "$HERE/scale/scale_bench.py" run --state "$SSTATE" --n "$n" --results "$RESULTS" \
        --env "ANSIBLE_SSH_CONTROL_PATH_DIR=$SSTATE/cp/$(cat "$SSTATE/lab-id")" ${SCALE_BENCH_ARGS:-} "$@"
}

report() {
    python3 "$HERE/scale/scale_bench.py" report --results "$RESULTS" \
        --json "$REPO/benchmarks/fleet_scale.json" --md "$REPO/benchmarks/fleet_scale.md"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case ${1:-run} in
        up) up "${2:?usage: scale.sh up N}" ;;
        down) down ;;
        bench) n=${2:?usage: scale.sh bench N [options]}; shift 2; bench "$n" "$@" ;;
        report) report ;;
        image) image ;;
        run)
            status=0
            for n in $SIZES; do
                up "$n"
                bench "$n" || status=1
            done
            [ "${SCALE_KEEP:-0}" = 1 ] || down
            report
            exit $status ;;
        *) sed -n '2,26p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
fi
