#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The whole test suite of hpc.slurm_adopt, as `make test` and CI (.ci/run) run it.
#
# Stages, in order; every stage runs even when an earlier one failed, and the
# exit status is non-zero when any failed.  A summary with the time of each
# stage is printed at the end.
#
#   unit      pytest tests/unit (+ the fleet node scripts, no lab needed): the node-side module, the PAM parser/editor,
#             the slurm.conf editor, module and role tests with ansible-playbook
#   corpus    the PAM corpus (tests/corpus): 30+ real-world PAM trees made with the real
#             generators (lab/pamcorpus/build.sh: cached Debian chroots, authselect 1.8,
#             pam-auth-update), each through the editor and the real-libpam property check
#   node      pytest tests/node against the three real Slurm labs on this machine
#             (host: Debian 12, Slurm 22.05; trixie: Debian 13 chroot, Slurm 24.11;
#             sid: Debian sid chroot, Slurm 26.05), our module and SchedMD's C module
#             side by side; then the node-marked tests under tests/unit (a lab must be up)
#   checks    ansible-lint --profile production, ansible-test sanity, Python 3.6
#             compatibility of the node-side code, galaxy build + offline install
#   molecule  the molecule scenarios in podman systemd containers (Debian 12, 13,
#             removal, RHEL layout)
#   fleet     the multi-node podman lab: rollout, health check, drift, removal
#   image     image mode (tests/image): the roles applied to a debootstrapped Debian 12
#             image root (cached under /var/cache/slurm-adopt-image), idempotence, exact
#             removal, the first-boot login check on the image's own libpam; then the
#             applied image booted as a systemd container in the fleet lab (node3):
#             real ssh logins (adopted, denied, admin) and the drift check green
#
# When molecule and image are asked for beside host stages (the default), they
# run one after the other in the background from the start, beside unit,
# corpus, node and checks (molecule uses podman containers, image a chroot,
# the others the host and the chroot labs; on 2 CPUs this saves about a third
# of the wall time); their output is kept in build/test-all/<stage>.log and
# printed when their turn comes.  TEST_ALL_SERIAL=1 runs every stage in order.
# The fleet stage and the image stage's boot test both use the fleet lab's
# containers (saf-ctl, saf-node1, ...): they take build/test-all/fleet-lab.lock
# in turn (a lock of this run only, not the machine's podman lock, which a
# caller may hold around the whole run).
#
# Usage: scripts/test-all.sh [stage ...]     (default: all, in the order above)
# Needs: root on Debian 12; the labs and the venv must be set up (make test does it).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=$ROOT/.venv/bin/python

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(unit corpus node checks molecule fleet image)

# fleet_lab CMD...: CMD while holding the fleet lab of this run (see above)
fleet_lab() {
    mkdir -p "$ROOT/build/test-all"
    # -o: containers and podman helpers (aardvark-dns) the command starts must not
    # inherit the lock and hold it after the command has ended
    flock -o "$ROOT/build/test-all/fleet-lab.lock" "$@"
}

run_stage() {
    case $1 in
        unit)     "$PY" -m pytest -q -m "not node" tests/unit tests/fleet/test_node_scripts.py ;;
        corpus)   "$PY" -m pytest -q tests/corpus ;;
        node)     ADOPT_LAB_REQUIRED=1 "$PY" -m pytest -q tests/node \
                  && ADOPT_LAB_REQUIRED=1 "$PY" -m pytest -q -m node tests/unit ;;
        checks)   scripts/check-collection.sh ;;
        molecule) scripts/molecule.sh ;;
        fleet)    fleet_lab bash lab/fleet/test.sh ;;
        image)    "$PY" -m pytest -q -p no:cacheprovider tests/image/test_image_mode.py; local rc=$?
                  fleet_lab "$PY" -m pytest -q -p no:cacheprovider tests/image/test_image_boot.py || rc=1
                  return $rc ;;
        *)        echo "unknown stage $1 (unit corpus node checks molecule fleet image)" >&2; return 2 ;;
    esac
}

declare -A RESULT TIME
overall=0
t_all=$SECONDS

# molecule, then image, in the background when they are asked for and the
# first stage asked for runs on the host (see above)
BG_DIR=$ROOT/build/test-all
BG=()
joined=" ${stages[*]} "
if [ "${TEST_ALL_SERIAL:-0}" != 1 ] && [ "${stages[0]}" != molecule ] && [ "${stages[0]}" != image ]; then
    for b in molecule image; do
        [[ $joined == *" $b "* ]] && BG+=("$b")
    done
fi
if [ ${#BG[@]} -gt 0 ]; then
    mkdir -p "$BG_DIR"
    for b in "${BG[@]}"; do rm -f "$BG_DIR/$b.rc" "$BG_DIR/$b.time"; done
    printf '\n===== test-all: stages %s started in the background (%s), logs in %s =====\n' \
        "${BG[*]}" "$(date +%H:%M:%S)" "$BG_DIR"
    (
        for b in "${BG[@]}"; do
            b0=$SECONDS
            run_stage "$b" > "$BG_DIR/$b.log" 2>&1
            rc=$?
            echo $((SECONDS - b0)) > "$BG_DIR/$b.time"
            echo "$rc" > "$BG_DIR/$b.rc.tmp" && mv "$BG_DIR/$b.rc.tmp" "$BG_DIR/$b.rc"
        done
    ) &
fi

for s in "${stages[@]}"; do
    printf '\n===== test-all: stage %s (%s) =====\n' "$s" "$(date +%H:%M:%S)"
    t0=$SECONDS
    if [[ " ${BG[*]} " == *" $s "* ]]; then
        while [ ! -e "$BG_DIR/$s.rc" ]; do sleep 5; done
        cat "$BG_DIR/$s.log"
        rc=$(cat "$BG_DIR/$s.rc")
        TIME[$s]=$(cat "$BG_DIR/$s.time")
        printf '(ran in the background: %ss)\n' "${TIME[$s]}"
        if [ "$rc" -eq 0 ]; then RESULT[$s]=PASS; else RESULT[$s]="FAIL (exit $rc)"; overall=1; fi
        continue
    else
        mkdir -p "$BG_DIR"
        run_stage "$s" 2>&1 | tee "$BG_DIR/$s.log"
        rc=${PIPESTATUS[0]}
    fi
    TIME[$s]=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then RESULT[$s]=PASS; else RESULT[$s]="FAIL (exit $rc)"; overall=1; fi
done

# what failed, again at the end: CI keeps only the tail of the output
for s in "${stages[@]}"; do
    [ "${RESULT[$s]}" = PASS ] && continue
    printf '\n----- %s failed; from build/test-all/%s.log -----\n' "$s" "$s"
    if ! grep -E '^(FAILED|ERROR) |^[^ ]+: FAIL|fatal: \[|failed=[1-9]' "$BG_DIR/$s.log" | head -n 15; then
        tail -n 10 "$BG_DIR/$s.log"
    fi
done
printf '\n===== test-all summary =====\n'
for s in "${stages[@]}"; do
    printf '%-9s %-14s %5ss\n' "$s" "${RESULT[$s]}" "${TIME[$s]}"
done
printf 'total %ss: %s\n' "$((SECONDS - t_all))" "$([ $overall -eq 0 ] && echo PASS || echo FAIL)"
exit $overall
