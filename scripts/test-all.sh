#!/usr/bin/env bash
# The whole test suite of hpc.slurm_adopt, as `make test` and CI (.ci/run) run it.
#
# Stages, in order; every stage runs even when an earlier one failed, and the
# exit status is non-zero when any failed.  A summary with the time of each
# stage is printed at the end.
#
#   unit      pytest tests/unit (+ the fleet node scripts, no lab needed): the node-side module, the PAM parser/editor,
#             the slurm.conf editor, module and role tests with ansible-playbook
#   node      pytest tests/node against the three real Slurm labs on this machine
#             (host: Debian 12, Slurm 22.05; trixie: Debian 13 chroot, Slurm 24.11;
#             sid: Debian sid chroot, Slurm 26.05), our module and SchedMD's C module
#             side by side; then the node-marked tests under tests/unit (a lab must be up)
#   checks    ansible-lint --profile production, ansible-test sanity, Python 3.6
#             compatibility of the node-side code, galaxy build + offline install
#   molecule  the molecule scenarios in podman systemd containers (Debian 12, 13,
#             removal, RHEL layout)
#   fleet     the multi-node podman lab: rollout, health check, drift, removal
#
# Usage: scripts/test-all.sh [stage ...]     (default: all, in the order above)
# Needs: root on Debian 12; the labs and the venv must be set up (make test does it).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=$ROOT/.venv/bin/python

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(unit node checks molecule fleet)

run_stage() {
    case $1 in
        unit)     "$PY" -m pytest -q -m "not node" tests/unit tests/fleet/test_node_scripts.py ;;
        node)     ADOPT_LAB_REQUIRED=1 "$PY" -m pytest -q tests/node \
                  && ADOPT_LAB_REQUIRED=1 "$PY" -m pytest -q -m node tests/unit ;;
        checks)   scripts/check-collection.sh ;;
        molecule) scripts/molecule.sh ;;
        fleet)    bash lab/fleet/test.sh ;;
        *)        echo "unknown stage $1 (unit node checks molecule fleet)" >&2; return 2 ;;
    esac
}

declare -A RESULT TIME
overall=0
t_all=$SECONDS
for s in "${stages[@]}"; do
    printf '\n===== test-all: stage %s (%s) =====\n' "$s" "$(date +%H:%M:%S)"
    t0=$SECONDS
    run_stage "$s"
    rc=$?
    TIME[$s]=$((SECONDS - t0))
    if [ $rc -eq 0 ]; then RESULT[$s]=PASS; else RESULT[$s]="FAIL (exit $rc)"; overall=1; fi
done

printf '\n===== test-all summary =====\n'
for s in "${stages[@]}"; do
    printf '%-9s %-14s %5ss\n' "$s" "${RESULT[$s]}" "${TIME[$s]}"
done
printf 'total %ss: %s\n' "$((SECONDS - t_all))" "$([ $overall -eq 0 ] && echo PASS || echo FAIL)"
exit $overall
