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
# 4. Checks: the unit succeeded; the node's drift check is green; real ssh
#    logins from the controller: a user without a job is denied by the
#    module, the admin gets in, a user with a job lands in the job's extern
#    step; ansible-pull run again (the unit restarted) changes nothing.
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
tag=localhost/saf-scale-pull:$( { podman image inspect -f '{{.Id}}' "$base"; echo "$core"; \
    cat "$PULL/Containerfile" "$PULL/slurm-adopt-pull.service"; } | sha256sum | cut -c1-12)
if ! podman image exists "$tag"; then
    slog "building $tag (git from the Debian mirror, ansible-core $core from PyPI)"
    podman build -q --network host --build-arg BASE="$base" --build-arg ANSIBLE_CORE="$core" \
        -f "$PULL/Containerfile" -t "$tag" "$PULL" >&2 || die "image build failed"
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
up 1

unit_done() {
    local s
    s=$(podman exec "$NODE" systemctl show -p ActiveState --value slurm-adopt-pull.service)
    [ "$s" = active ] || [ "$s" = failed ]
}
recap() { podman exec "$NODE" sh -c "grep -E '^localhost +:' /var/log/ansible-pull.log | tail -n1"; }

t0=$SECONDS
wait_for 900 unit_done || die "ansible-pull did not finish in 900 s"
first=$((SECONDS - t0))
if [ "$(podman exec "$NODE" systemctl show -p Result --value slurm-adopt-pull.service)" = success ]; then
    ok "ansible-pull at boot succeeded (${first}s after the lab was up): $(recap)"
else
    bad "ansible-pull at boot failed: $(podman exec "$NODE" tail -n 30 /var/log/ansible-pull.log)"
fi

# the drift check, as slurmd's HealthCheckProgram runs it
out=$(podman exec -e SLURMD_NODENAME=node1 "$NODE" /usr/sbin/slurm-adopt-healthcheck --dry-run 2>&1 || true)
if [[ $out == *"action: none"* && $out != *FAIL* ]]; then ok "drift check green"; else bad "drift check: $out"; fi

# real logins from the controller
out=$(podman exec "$CTL" su - fleetbob -c "ssh -o LogLevel=INFO node1 true" 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && [[ $out == *"no active jobs"* ]]; then ok "fleetbob (no job) denied by the module"
else bad "fleetbob (no job): rc=$rc $out"; fi
if podman exec "$CTL" su - fleetadmin -c "ssh node1 true" >/dev/null 2>&1; then ok "fleetadmin (admin) gets in"
else bad "fleetadmin refused"; fi
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

# ansible-pull again (as at the next boot): nothing changes
podman exec "$NODE" systemctl restart slurm-adopt-pull.service || true
wait_for 900 unit_done || die "the second ansible-pull did not finish"
r=$(recap)
if [[ $r == *" changed=0 "* && $r == *" failed=0 "* ]]; then ok "ansible-pull again changes nothing: $r"
else bad "ansible-pull again: $r"; fi

[ "${SCALE_KEEP:-0}" = 1 ] || down
slog "$FAILS check(s) failed"
[ $FAILS = 0 ]
