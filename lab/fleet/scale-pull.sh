#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# ansible-pull, tested once in the scale lab (docs/fleet.md, "ansible-pull"):
# a compute node that configures itself at boot.
#
#   lab/fleet/scale-pull.sh        # build, boot, check, reboot-run again, tear down
#
# 1. A site configuration repository, as a site would keep one: a bare git
#    repository with lab/fleet/scale/pull/local.yml, its ansible.cfg and the
#    collection (this working tree) vendored under collections/; no network:
#    it is bind-mounted into the node read-only.
# 2. A node image (lab/fleet/scale/pull/Containerfile: the scale lab's node
#    plus git and ansible-core) whose unit slurm-adopt-pull.service runs
#    `ansible-pull -U /srv/site-config.git local.yml` at boot.
# 3. The scale lab's controller and one such node (node1), the repository
#    bind-mounted read-only; slurm.conf already carries the prerequisites
#    (PrologFlags=Contain, task/cgroup, proctrack/cgroup), as a site's own
#    configuration management writes it.
# 4. Checks: the unit succeeded (its run time from systemd's timestamps); the
#    node's drift check is green; real ssh logins from the controller: a
#    user without a job is denied by the module, the admin gets in, a user
#    with a job lands in the job's extern step; then the node reboots and
#    ansible-pull, run again at boot, succeeds and changes nothing.
# Exit status 0 when every check passed.  SCALE_KEEP=1 keeps the lab up.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/fleet/scale.sh
. "$HERE/scale.sh"
PULL=$HERE/scale/pull
NODE=$PREFIX-node1
FAILS=0
ok() { printf 'scale-pull: PASS %s\n' "$*"; }
bad() { printf 'scale-pull: FAIL %s\n' "$*"; FAILS=$((FAILS + 1)); }

core=$(sed -n 's/^ansible-core==//p' "$REPO/requirements/constraints.txt")
[ -n "$core" ] || die "no ansible-core pin in requirements/constraints.txt"
base=$(image)
# the pins of ansible-core's dependencies are in constraints.txt too: a new pin, a new image
tag=localhost/saf-scale-pull:$( { podman image inspect -f '{{.Id}}' "$base"; cat "$REPO/requirements/constraints.txt"; \
    cat "$PULL/Containerfile" "$PULL/slurm-adopt-pull.service"; } | sha256sum | cut -c1-12)
if ! podman image exists "$tag"; then
    # ansible-core and its dependencies as wheels, fetched here by this
    # machine's pip (its index and CA settings; pinned as the project's venv),
    # installed in the image without an index: the build reaches only the
    # Debian mirror (git, python3-venv)
    t_build=$SECONDS
    ctx=$(mktemp -d /tmp/saf-scale-pull.XXXXXX)
    cp "$PULL/slurm-adopt-pull.service" "$ctx/"
    [ -x "$REPO/.venv/bin/pip" ] || bash "$REPO/scripts/venv.sh" >/dev/null || die "scripts/venv.sh failed"
    slog "building $tag (ansible-core $core: wheels by pip download here; git from the Debian mirror)"
    "$REPO/.venv/bin/pip" download -q --only-binary=:all: -c "$REPO/requirements/constraints.txt" \
        -d "$ctx/wheels" "ansible-core==$core" >&2 || { rm -rf "$ctx"; die "pip download ansible-core==$core failed"; }
    podman build -q --network host --build-arg BASE="$base" --build-arg ANSIBLE_CORE="$core" \
        -f "$PULL/Containerfile" -t "$tag" "$ctx" >&2 || { rm -rf "$ctx"; die "image build failed"; }
    rm -rf "$ctx"
    slog "built $tag in $((SECONDS - t_build))s"
fi

# ---------------------------------------------------------------- the site's repository
repo=$SSTATE/site-config
rm -rf "$repo"
mkdir -p "$repo"
cp "$PULL/local.yml" "$PULL/ansible.cfg" "$repo/"
HERE=$HERE python3 -c 'import os, sys; sys.path.insert(0, os.path.join(os.environ["HERE"], "scale")); import scale_bench; scale_bench.snapshot(sys.argv[1])' \
    "$repo/collections"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=lab -c user.email=lab@localhost add -A
git -C "$repo" -c user.name=lab -c user.email=lab@localhost commit -q -m "site configuration"
# what the nodes pull from: a bare repository, as a site's git server keeps it
rm -rf "$repo.git"
git clone -q --bare "$repo" "$repo.git"

# ---------------------------------------------------------------- the lab
UP_IMAGE=$tag UP_TASKPLUGIN=task/affinity,task/cgroup UP_PROLOGFLAGS=Contain
UP_MOUNTS=(-v "$repo.git:/srv/site-config.git:ro")
# the node's first ansible-pull is a start job of its boot: systemd reports
# the system "starting" until it ends, so `up` waits for it (FLEET_WAIT per wait)
FLEET_WAIT=${SCALE_PULL_WAIT:-900}
t_up=$SECONDS
up 1
t_up=$((SECONDS - t_up))

prop() { podman exec "$NODE" systemctl show -p "$1" --value "${2:-slurm-adopt-pull.service}"; }
unit_done() {
    local s
    s=$(prop ActiveState)
    [ "$s" = active ] || [ "$s" = failed ]
}
recaps() { podman exec "$NODE" sh -c "grep -E '^localhost +:' /var/log/ansible-pull.log || true"; }
# the unit's last run, from systemd's own timestamps: "<seconds it ran> <seconds
# from the container's systemd start (its boot) to the end of the run>"
run_times() {
    local start end boot
    start=$(prop ExecMainStartTimestampMonotonic) end=$(prop ExecMainExitTimestampMonotonic)
    boot=$(podman exec "$NODE" systemctl show -p UserspaceTimestampMonotonic --value)
    awk -v s="$start" -v e="$end" -v b="$boot" 'BEGIN { printf "%.0f %.0f\n", (e - s) / 1e6, (e - b) / 1e6 }'
}
# the unit ran at this boot, ended, and succeeded, with one more recap line in its log
pull_ran() {   # NAME RECAPS_BEFORE
    local r n ran after
    r=$(recaps)
    n=$(printf '%s\n' "$r" | grep -c . || true)
    read -r ran after < <(run_times)
    if [ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] && [ "$n" -gt "$2" ]; then
        ok "$1 succeeded: ran ${ran}s, ended ${after}s after the node's boot: $(printf '%s\n' "$r" | tail -n1 | tr -s ' ')"
    else
        bad "$1 failed (Result=$(prop Result), status $(prop ExecMainStatus), recap lines $n, before $2): $(podman exec "$NODE" tail -n 30 /var/log/ansible-pull.log)"
    fi
}
drift_green() {   # the drift check, as slurmd's HealthCheckProgram runs it: every check OK, nothing to do
    local out
    out=$(podman exec -e SLURMD_NODENAME=node1 "$NODE" /usr/sbin/slurm-adopt-healthcheck --dry-run 2>&1 || true)
    if [[ $out == *"slurm-adopt check on node1: OK"* && $out == *"action: none"* ]]; then ok "drift check green$1"
    else bad "drift check$1: $out"; fi
}

wait_for 900 unit_done || die "ansible-pull did not finish in 900 s"
pull_ran "ansible-pull at boot (lab up in ${t_up}s)" 0
drift_green ""

# real logins from the controller
out=$(podman exec "$CTL" su - fleetbob -c "ssh -o LogLevel=INFO node1 true" 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && [[ $out == *"Access denied by pam_slurm_adopt: you have no active jobs"* ]]; then
    ok "fleetbob (no job) denied by the module"
else bad "fleetbob (no job): rc=$rc $out"; fi
out=$(podman exec "$CTL" su - fleetadmin -c "ssh -o LogLevel=INFO node1 id -un" 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && printf '%s\n' "$out" | grep -qx fleetadmin; then ok "fleetadmin (admin) gets in"
else bad "fleetadmin refused: rc=$rc $out"; fi
job=$(podman exec "$CTL" su - fleetalice -c "sbatch --parsable -w node1 -o /dev/null --chdir=/tmp --wrap 'sleep 300'")
extern() { podman exec "$NODE" test -S "/var/lib/slurm/slurmd/node1_$job.4294967292"; }
if wait_for 60 extern; then
    out=$(podman exec "$CTL" su - fleetalice -c "ssh node1 'grep freezer /proc/self/cgroup'" 2>&1 || true)
    if [[ $out == *"/job_$job/step_extern"* ]]; then ok "fleetalice adopted into job $job's extern step"
    else bad "fleetalice not adopted: $out"; fi
else
    bad "job $job has no extern step on node1"
fi
podman exec "$CTL" scancel "$job" >/dev/null 2>&1 || true

# the next boot: the node reboots (podman restart: its systemd stops and boots
# again) and ansible-pull runs again at boot: it must change nothing
before=$(recaps | grep -c . || true)
podman restart -t 30 "$NODE" >/dev/null
booted_again() {
    # shellcheck disable=SC2016  # expanded by the container's sh
    podman exec "$NODE" sh -c 's=$(systemctl is-system-running 2>/dev/null); [ "$s" = running ] || [ "$s" = degraded ]'
}
wait_for 900 booted_again || die "$NODE did not boot again in 900 s"
wait_for 900 unit_done || die "the second ansible-pull did not finish"
pull_ran "ansible-pull at the next boot" "$before"
r=$(recaps | tail -n1)
if [[ $r == *" changed=0 "* && $r == *" failed=0 "* && $r == *" unreachable=0 "* ]]; then
    ok "ansible-pull again changes nothing: $(printf '%s' "$r" | tr -s ' ')"
else bad "ansible-pull again changed something or failed: $r"; fi
drift_green " after the reboot"

[ "${SCALE_KEEP:-0}" = 1 ] || down
slog "$FAILS check(s) failed"
[ $FAILS = 0 ]
