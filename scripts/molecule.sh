#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run the molecule scenarios (delegated driver, podman systemd containers).
#
#   scripts/molecule.sh                 # every scenario under molecule/ (debian12 debian13 removal rhel_layout)
#   scripts/molecule.sh debian12 ...    # only these
#
# Steps: scripts/venv.sh (the pinned toolchain), lab/images/build.sh (the node
# images; a no-op when they are current), then `molecule test -s NAME` for each
# scenario, one after the other.  Every scenario runs even when an earlier one
# failed; the exit status is non-zero if any failed.  Prints the time of each
# molecule phase and of each scenario.  Logs: $MOLECULE_LOG_DIR (default
# build/molecule/<scenario>.log).
#
# Cleanup (also on Ctrl-C): the containers and networks named in the
# scenarios' molecule.yml, by exact name.  Never `molecule reset` (it removes
# every molecule container on the machine).  A lock
# (/run/slurm-adopt-lab/molecule.lock) keeps two runs from sharing container names.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_DIR=${MOLECULE_LOG_DIR:-$ROOT/build/molecule}
LOCK=/run/slurm-adopt-lab/molecule.lock

log() { printf 'molecule.sh: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root (rootful podman)"; exit 1; }

if [ $# -gt 0 ]; then
    SCENARIOS=("$@")
else
    SCENARIOS=()
    for f in molecule/*/molecule.yml; do
        SCENARIOS+=("$(basename "$(dirname "$f")")")
    done
fi
for s in "${SCENARIOS[@]}"; do
    [ -f "molecule/$s/molecule.yml" ] || { log "no scenario molecule/$s"; exit 2; }
done

T_ALL=$SECONDS
VENV=$(scripts/venv.sh | tail -n 1)
# shellcheck disable=SC1091
. "$VENV/bin/activate"        # molecule calls ansible-playbook & co. by name

mkdir -p "$(dirname "$LOCK")" "$LOG_DIR"
exec 9>"$LOCK"
if ! flock -n 9; then
    log "waiting for another molecule run ($LOCK)"
    flock -w 3600 9 || { log "timed out waiting for $LOCK"; exit 1; }
fi

t0=$SECONDS
lab/images/build.sh >/dev/null
T_IMAGES=$((SECONDS - t0))

# Names of our containers and networks, from the scenarios' molecule.yml.
mapfile -t OWNED < <(python - "${SCENARIOS[@]}" <<'PY'
import sys, yaml
for s in sys.argv[1:]:
    with open("molecule/%s/molecule.yml" % s) as f:
        for p in yaml.safe_load(f).get("platforms", []):
            print("container", p["name"])
            if p.get("network"):
                print("network", p["network"])
PY
)

export ANSIBLE_HOME
ANSIBLE_HOME=$(mktemp -d /tmp/slurm-adopt-molecule.XXXXXX)
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1

# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
    local entry kind name
    for entry in "${OWNED[@]}"; do
        read -r kind name <<<"$entry"
        if [ "$kind" = container ]; then
            podman rm --force --ignore --time 5 "$name" >/dev/null 2>&1 || true
        fi
    done
    for entry in "${OWNED[@]}"; do
        read -r kind name <<<"$entry"
        if [ "$kind" = network ] && podman network exists "$name" 2>/dev/null; then
            podman network rm "$name" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$ANSIBLE_HOME"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Echo molecule's output and note when each "[scenario > phase]" starts/ends.
PHASE_FILTER='
import re, sys, time
pat = re.compile(r"\[(\S+) > (\S+)\]\s*(?:\x1b\[[0-9;]*m)*(Executing|Executed)")
out = open(sys.argv[1], "w")
start = {}
t0 = time.monotonic()
for line in sys.stdin:
    now = time.monotonic()
    sys.stdout.write("[%7.1fs] %s" % (now - t0, line))
    sys.stdout.flush()
    m = pat.search(line)
    if not m:
        continue
    key = (m.group(1), m.group(2))
    if m.group(3) == "Executing":
        start.setdefault(key, now)
    elif key in start:
        ok = "Successful" in line or "Missing" in line or "Skipped" in line
        out.write("%s %s %.1f %s\n" % (key[0], key[1], now - start.pop(key), "ok" if ok else "FAILED"))
        out.flush()
'

declare -A RESULT DURATION
status=0
for s in "${SCENARIOS[@]}"; do
    log "scenario $s (log: $LOG_DIR/$s.log)"
    t0=$SECONDS
    rc=0
    set +e
    # 9>&-: the containers and podman helpers molecule starts must not keep our lock
    molecule test -s "$s" 9>&- 2>&1 \
        | python -u -c "$PHASE_FILTER" "$LOG_DIR/$s.phases" \
        | tee "$LOG_DIR/$s.log"
    rc=${PIPESTATUS[0]}
    set -e
    DURATION[$s]=$((SECONDS - t0))
    if [ "$rc" = 0 ]; then RESULT[$s]=passed; else RESULT[$s]="FAILED (rc=$rc)"; status=1; fi
done

{
    echo
    echo "== molecule timings (seconds) =="
    printf '%-14s %s\n' images "$T_IMAGES (lab/images/build.sh)"
    for s in "${SCENARIOS[@]}"; do
        phases=$(awk '{ printf "%s%s=%s%s", sep, $2, $3, ($4 == "ok" ? "" : "!"); sep = " " }' \
                 "$LOG_DIR/$s.phases" 2>/dev/null || true)
        printf '%-14s %-5s %-16s %s\n' "$s" "${DURATION[$s]}" "${RESULT[$s]}" "$phases"
    done
    printf '%-14s %s\n' total "$((SECONDS - T_ALL))"
} | tee "$LOG_DIR/summary.txt"
exit $status
