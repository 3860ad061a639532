#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The fleet demo: bring up a four-node Slurm cluster in podman containers
# (controller, two compute nodes, a login node; real munge, Slurm 22.05, sshd,
# PAM), roll pam_slurm_adopt out with playbooks/site.yml (canary, lockout
# pre-flight, fresh-ssh probe), log in as users with and without jobs, run
# playbooks/healthcheck.yml, and print a summary.  The lab stays up at the
# end (lab/fleet/down.sh removes it).
#
#   lab/fleet/demo.sh            # FLEET_FRESH=0 to reuse a running lab
#
# Full ansible-playbook output: $FLEET_LOG_DIR (printed at the end).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lab/fleet/common.sh
. "$HERE/common.sh"

LOGS=${FLEET_LOG_DIR:-$(mktemp -d /tmp/fleet-demo.XXXXXX)}
mkdir -p "$LOGS"
T0=$SECONDS
declare -a SUMMARY=()
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
record() { SUMMARY+=("$(printf '%-46s %s' "$1" "$2")"); }

[ -x "$REPO/.venv/bin/ansible-playbook" ] || bash "$REPO/scripts/venv.sh" >/dev/null \
    || die "scripts/venv.sh failed"
export PATH="$REPO/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
# deploy a snapshot of the collection as it is now
COLL=$(mktemp -d /tmp/fleet-demo-coll.XXXXXX)
mkdir -p "$COLL/ansible_collections/hpc/slurm_adopt"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | grep -zv -e '^lab/' -e '^benchmarks/' -e '^tests/node/' -e '^tests/unit/' \
    | tar --null -T - -cf - 2>/dev/null) | tar -C "$COLL/ansible_collections/hpc/slurm_adopt" -xf -
export ANSIBLE_COLLECTIONS_PATH=$COLL
trap 'rm -rf "$COLL"' EXIT

playbook() {   # playbook NAME LOGNAME [args...]: run, show the interesting lines
    local name=$1 logname=$2; shift 2
    ansible-playbook -i "$STATE/inventory.yml" "$COLL/ansible_collections/hpc/slurm_adopt/playbooks/$name.yml" "$@" \
        > "$LOGS/$logname.log" 2>&1
    local rc=$?
    grep -E '^PLAY \[|pre-flight passed|LOCKOUT|ROLLED BACK|"msg": "(saf-|fresh ssh)|fatal:' \
        "$LOGS/$logname.log" | sed -e 's/^PLAY \[\(.*\)\] \**$/ - \1/' -e 's/^ *"msg": "\(.*\)"$/     \1/' \
        -e 's/^fatal: /     FAILED: /' | cut -c1-160
    return $rc
}
in_node() { podman exec "$@"; }

# -------------------------------------------------------------------- 1. lab
step "1/5 Bring up the lab: ctl (slurmctld), node1+node2 (slurmd, sshd), login (sshd)"
t=$SECONDS
if ! FLEET_FRESH=${FLEET_FRESH:-1} bash "$HERE/up.sh" 2> "$LOGS/up.log"; then
    tail -n 20 "$LOGS/up.log"; die "lab bring-up failed (log: $LOGS/up.log)"
fi
note "$(tail -n1 "$LOGS/up.log" | sed 's/^fleet: //')"
note "stock Debian nodes: pam_systemd in common-session, logind running, no adopt rule"
record "lab up ($((SECONDS - t))s)" "4 containers, $(in_node saf-ctl sinfo -h -o '%D') compute nodes idle"

# -------------------------------------------------------------------- 2. rollout
step "2/5 Roll out: ansible-playbook playbooks/site.yml (canary node1, then node2)"
t=$SECONDS
if playbook site site; then
    record "rollout site.yml ($((SECONDS - t))s)" "OK: node1, node2 adopted; login, ctl untouched"
else
    record "rollout site.yml ($((SECONDS - t))s)" "FAILED (see $LOGS/site.log)"
fi

# -------------------------------------------------------------------- 3. logins
step "3/5 Real ssh logins from the login node"
in_node saf-ctl scancel -u fleetalice >/dev/null 2>&1
job=$(in_node saf-ctl su - fleetalice -c "sbatch --parsable -w node1 -o /dev/null --chdir=/tmp --wrap 'sleep 600'")
for _ in $(seq 60); do
    in_node saf-node1 test -S "/var/lib/slurm/slurmd/node1_$job.4294967292" && break
    sleep 0.5
done
note "fleetalice has job $job on node1"
out=$(in_node saf-login su - fleetalice -c "ssh node1 'grep freezer /proc/self/cgroup'" 2>&1)
if [[ $out == *"/job_$job/step_extern"* ]]; then
    note "fleetalice -> node1: adopted into job $job's extern step (${out##*:})"
    record "user with a job" "adopted into job $job/step_extern"
else
    note "fleetalice -> node1: NOT adopted: $out"; record "user with a job" "NOT ADOPTED"
fi
out=$(in_node saf-login su - fleetbob -c "ssh -o LogLevel=INFO node1 true" 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *"no active jobs"* ]]; then
    note "fleetbob   -> node1: denied: $(grep -m1 'Access denied' <<<"$out")"
    record "user without a job" "denied"
else
    note "fleetbob   -> node1: rc=$rc $out"; record "user without a job" "NOT DENIED"
fi
if in_node saf-login su - fleetadmin -c "ssh node1 true" >/dev/null 2>&1; then
    note "fleetadmin -> node1: in (group fleetwheel, pam_access), no job needed"
    record "admin (fleetwheel) without a job" "allowed"
else
    note "fleetadmin -> node1: REFUSED"; record "admin (fleetwheel) without a job" "REFUSED"
fi
if in_node saf-ctl su - fleetbob -c "ssh login true" >/dev/null 2>&1; then
    note "fleetbob   -> login: in (login nodes never get the adopt rule)"
    record "user without a job on the login node" "allowed"
else
    record "user without a job on the login node" "REFUSED"
fi
in_node saf-ctl scancel "$job" >/dev/null 2>&1

# -------------------------------------------------------------------- 4. health
step "4/5 Health check: ansible-playbook playbooks/healthcheck.yml"
t=$SECONDS
ansible-playbook -i "$STATE/inventory.yml" "$COLL/ansible_collections/hpc/slurm_adopt/playbooks/healthcheck.yml" \
    -e "slurm_adopt_health_json=$LOGS/health.json" > "$LOGS/healthcheck.log" 2>&1
hc=$?
sed -n '/TASK \[Health table\]/,/^}/p' "$LOGS/healthcheck.log" | grep -E '^ +"' \
    | grep -v '"msg"' | sed -e 's/^ *"//' -e 's/",\?$//' | cut -c1-150 | sed 's/^/   /'
record "health check ($((SECONDS - t))s)" "exit $hc; $(grep -o 'overall: [A-Z]* ([^)]*)' "$LOGS/healthcheck.log" | head -1)"
note "JSON: $LOGS/health.json"

# -------------------------------------------------------------------- 5. drift hook
step "5/5 The node's own drift check (what slurmd's HealthCheckProgram runs every 60 s)"
in_node -e SLURMD_NODENAME=node1 saf-node1 /usr/sbin/slurm-adopt-healthcheck | sed 's/^/   /'
record "drift hook on node1" "$(in_node saf-ctl sinfo -h -n node1 -o '%T')"

# -------------------------------------------------------------------- summary
printf '\n\033[1m== Summary (%ss)\033[0m\n' "$((SECONDS - T0))"
for line in "${SUMMARY[@]}"; do printf '   %s\n' "$line"; done
printf '\n   logs: %s\n   the lab stays up: podman exec -it saf-login bash; remove it with lab/fleet/down.sh\n' "$LOGS"
[[ "${SUMMARY[*]}" != *FAILED* && "${SUMMARY[*]}" != *NOT* && "${SUMMARY[*]}" != *REFUSED* && $hc -eq 0 ]]
