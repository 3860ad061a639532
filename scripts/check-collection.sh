#!/usr/bin/env bash
# Static checks of the hpc.slurm_adopt collection, run from anywhere:
#
#   lint      ansible-lint --profile production (config: .ansible-lint, .yamllint)
#   sanity    ansible-test sanity --local --python 3.11 on a copy of the tree at
#             build/ansible_collections/<ns>/<name> (ansible-test insists on
#             that layout); the copy holds the git-tracked and untracked
#             not-ignored files, minus galaxy.yml build_ignore (lab/,
#             benchmarks/, ... are not shipped, so not sanity-tested;
#             SANITY_ALL=1 includes them).  Ignores: tests/sanity/ignore-2.19.txt.
#   pycompat  the node-side Python (roles/*/files/**/*.py, loaded by
#             pam_python/python3 on compute nodes) must run on Python 3.6+
#             with the standard library only: vermin -t=3.6- plus an
#             import check.  (ansible-test 2.19 cannot compile for < 3.8.)
#   build     ansible-galaxy collection build from the staged copy into
#             build/, `ansible-galaxy collection install --offline` of the
#             tarball into a temp path, then checks of the installed tree
#             (MANIFEST.json, FILES.json, the PAM module file, no junk,
#             ansible-doc for every module and every role with argument_specs).
#
# Usage: scripts/check-collection.sh [lint] [sanity] [pycompat] [build]  (default: all)
# Env:   SANITY_ARGS="..."  extra args for ansible-test sanity (e.g. "--test pep8")
#        SANITY_ALL=1       sanity-test build_ignore'd paths too (lab/, benchmarks/)
#        CHECK_TIMEOUT=N    seconds allowed per step (default 900)
# Exit status is non-zero if any step fails; a summary with timings is printed
# at the end.
#
# ansible-test creates one virtualenv per sanity test (pylint, pep8,
# validate-modules, yamllint, ...) with its own pinned requirements, pip-installed
# from PyPI on first use and cached under ~/.ansible/test/venv (keyed by a hash
# of the requirements), so later runs need no network.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
STEP_TIMEOUT=${CHECK_TIMEOUT:-900}
BUILD=$ROOT/build

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(lint sanity pycompat build)
for s in "${steps[@]}"; do
    case $s in
        lint|sanity|pycompat|build) ;;
        *) echo "unknown step: $s (lint|sanity|pycompat|build)" >&2; exit 2 ;;
    esac
done

VENV=$(bash "$ROOT/scripts/venv.sh" | tail -n1) || { echo "scripts/venv.sh failed" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

read -r NS NAME < <(python3 - <<'PY'
import yaml
g = yaml.safe_load(open("galaxy.yml"))
print(g["namespace"], g["name"])
PY
) || { echo "cannot read namespace/name from galaxy.yml" >&2; exit 1; }
COLL=$BUILD/ansible_collections/$NS/$NAME

declare -A RESULT TIME
banner() { printf '\n======== %s ========\n' "$*"; }

# Copy the collection source (tracked + untracked-not-ignored files, minus
# galaxy.yml build_ignore) to $COLL, as a fresh git repo so that ansible-test
# lists exactly these files (without it, ansible-test would find /work/main's
# .git, where build/ is ignored, and see no files at all).
stage_tree() {
    [ -d "$COLL/.git" ] && [ "${STAGED:-0}" = 1 ] && return 0
    rm -rf "$BUILD/ansible_collections"
    mkdir -p "$COLL"
    python3 - "$COLL" "${SANITY_ALL:-0}" <<'PY' || return 1
import fnmatch, os, shutil, subprocess, sys
import yaml

dest, include_all = sys.argv[1], sys.argv[2] == "1"
ignore = yaml.safe_load(open("galaxy.yml")).get("build_ignore") or []
if include_all:
    ignore = [p for p in ignore if p in (".venv", ".git", "*.tar.gz")]
out = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    check=True, capture_output=True).stdout.decode()
n = 0
for path in sorted(set(filter(None, out.split("\0")))):
    if not os.path.lexists(path):          # deleted in the work tree
        continue
    parts = path.split("/")
    # same matching as ansible-galaxy: pattern vs. the path and each parent dir
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if any(fnmatch.fnmatch(p, pat) for pat in ignore for p in prefixes):
        continue
    if path.startswith("build/"):
        continue
    target = os.path.join(dest, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), target)
    else:
        shutil.copy2(path, target)
    n += 1
print(f"staged {n} files in {dest}")
PY
    git -C "$COLL" init -q
    # Collections the content may import/depend on (from the venv, see
    # scripts/venv.sh) must sit in the same ansible_collections/ root.
    if [ -d "$VENV/collections/ansible_collections" ]; then
        for d in "$VENV"/collections/ansible_collections/*/*; do
            ns=$(basename "$(dirname "$d")"); n=$(basename "$d")
            [ "$ns" = "$NS" ] && [ "$n" = "$NAME" ] && continue
            mkdir -p "$BUILD/ansible_collections/$ns"
            ln -sfn "$d" "$BUILD/ansible_collections/$ns/$n"
        done
    fi
    STAGED=1
}

step_lint() {
    timeout "$STEP_TIMEOUT" ansible-lint --profile production --nocolor
}

# ansible-test creates each sanity venv --without-pip and bootstraps pip with a
# get-pip.py it downloads from ci-files.testing.ansible.com -- unreachable here
# (only PyPI is).  It uses ~/.ansible/test/cache/get_pip_<ver>.py when present,
# so put a stand-in there: ensurepip (offline, Debian's python3-venv wheels),
# then pip-install the exact packages ansible-test asked for (pip==<ver>) from
# PyPI, honouring --no-setuptools/--no-wheel like get-pip.py does.
install_get_pip_shim() {
    local ver cache
    ver=$(python3 -c '
from ansible_test._internal.python_requirements import get_venv_packages
class P: version = "3.11"
print(get_venv_packages(P())["pip"])') || return 1
    cache=$HOME/.ansible/test/cache/get_pip_${ver//./_}.py
    if [ -f "$cache" ] && ! grep -q 'hpc.slurm_adopt get-pip shim' "$cache"; then
        return 0  # a real get-pip.py someone put there: keep it
    fi
    mkdir -p "$(dirname "$cache")"
    cat > "$cache.tmp" <<'PY'
"""hpc.slurm_adopt get-pip shim for ansible-test (see scripts/check-collection.sh)."""
import subprocess
import sys

args = sys.argv[1:]
drop = {"--no-setuptools": "setuptools", "--no-wheel": "wheel"}
unwanted = [pkg for opt, pkg in drop.items() if opt in args]
args = [a for a in args if a not in drop]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                      stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + args)
if unwanted:
    subprocess.check_call([sys.executable, "-m", "pip", "uninstall", "-q", "-y"] + unwanted)
PY
    mv "$cache.tmp" "$cache"
}

step_sanity() {
    stage_tree || return 1
    install_get_pip_shim || { echo "cannot install the get-pip shim"; return 1; }
    # shellcheck disable=SC2086
    (cd "$COLL" && timeout "$STEP_TIMEOUT" ansible-test sanity --local --python 3.11 --color no ${SANITY_ARGS:-})
}

step_pycompat() {
    local -a files=()
    local f
    while IFS= read -r -d '' f; do
        [ -f "$f" ] && files+=("$f")
    done < <(git ls-files -z --cached --others --exclude-standard -- 'roles/*/files/*.py')
    if [ ${#files[@]} -eq 0 ]; then
        echo "no roles/*/files/**/*.py yet"
        return 0
    fi
    local rc=0
    echo "vermin -t=3.6- on ${#files[@]} file(s)"
    timeout "$STEP_TIMEOUT" vermin -q -t=3.6- --violations --no-tips --eval-annotations "${files[@]}" || rc=1
    # Standard library (or a module/package next to it in files/) only.
    python3 - "${files[@]}" <<'PY' || rc=1
import ast, os, sys

bad = 0
for path in sys.argv[1:]:
    here = os.path.dirname(path)
    # files/<x>.py may import files/<pkg>/...; files/<pkg>/m.py its siblings
    top = path.split("/files/", 1)[0] + "/files"
    local = set()
    for d in {here, top}:
        for n in os.listdir(d):
            if n.endswith(".py"):
                local.add(n[:-3])
            elif os.path.isfile(os.path.join(d, n, "__init__.py")):
                local.add(n)
    tree = ast.parse(open(path, "rb").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            if root not in sys.stdlib_module_names and root not in local:
                print(f"{path}:{node.lineno}: imports {name!r}: not in the standard library")
                bad += 1
print(f"stdlib-only imports: {len(sys.argv) - 1} file(s), {bad} problem(s)")
sys.exit(1 if bad else 0)
PY
    return "$rc"
}

step_build() {
    stage_tree || return 1
    rm -f "$BUILD/$NS-$NAME"-*.tar.gz
    timeout "$STEP_TIMEOUT" ansible-galaxy collection build --force --output-path "$BUILD" "$COLL" || return 1
    local tarball
    tarball=$(ls "$BUILD/$NS-$NAME"-*.tar.gz) || return 1
    echo "built $tarball ($(du -h "$tarball" | cut -f1))"

    local tmp rc=0
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    ANSIBLE_COLLECTIONS_PATH="$tmp" timeout "$STEP_TIMEOUT" ansible-galaxy collection install --offline --force \
        -p "$tmp/ansible_collections" "$tarball" || return 1
    local inst=$tmp/ansible_collections/$NS/$NAME
    for f in MANIFEST.json FILES.json; do
        [ -f "$inst/$f" ] || { echo "FAIL: installed tree lacks $f"; rc=1; }
    done
    # galaxy.yml `readme:` must ship (ansible-galaxy build does not check it;
    # Galaxy/Automation Hub reject an upload without it).
    local readme
    readme=$(python3 -c 'import yaml; print(yaml.safe_load(open("galaxy.yml")).get("readme") or "")')
    if [ -n "$readme" ] && [ ! -f "$inst/$readme" ]; then
        echo "FAIL: galaxy.yml readme '$readme' is not in the built collection"; rc=1
    fi
    local pam=roles/adopt_module/files/pam_slurm_adopt.py
    if [ -f "$COLL/$pam" ]; then
        cmp -s "$COLL/$pam" "$inst/$pam" || { echo "FAIL: installed tree lacks an identical $pam"; rc=1; }
    fi
    for junk in build .venv .git tests/output .ansible .pytest_cache; do
        [ -e "$inst/$junk" ] && { echo "FAIL: installed tree contains $junk"; rc=1; }
    done
    echo "installed $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["files"]))' "$inst/FILES.json") paths into $inst"

    # ansible-doc sees exactly this install (no sys.path scan of the venv).
    local -a adoc=(env ANSIBLE_COLLECTIONS_PATH="$tmp" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ansible-doc)
    local mod listed
    listed=$("${adoc[@]}" -t module -l "$NS.$NAME" 2>&1) || { echo "$listed"; echo "FAIL: ansible-doc -l"; rc=1; }
    for mod in "$COLL"/plugins/modules/*.py; do
        [ -e "$mod" ] || continue
        mod=$(basename "$mod" .py)
        grep -q "^$NS\.$NAME\.$mod " <<<"$listed" || { echo "FAIL: ansible-doc -l does not list $NS.$NAME.$mod"; rc=1; continue; }
        "${adoc[@]}" -t module "$NS.$NAME.$mod" >/dev/null || { echo "FAIL: ansible-doc $NS.$NAME.$mod"; rc=1; }
    done
    [ -n "$listed" ] && printf 'ansible-doc -l %s:\n%s\n' "$NS.$NAME" "$listed"
    local role
    for role in "$COLL"/roles/*/meta/argument_specs.y*ml; do
        [ -e "$role" ] || continue
        role=$(basename "$(dirname "$(dirname "$role")")")
        if "${adoc[@]}" -t role "$NS.$NAME.$role" >/dev/null; then
            echo "ansible-doc -t role $NS.$NAME.$role: ok"
        else
            echo "FAIL: ansible-doc -t role $NS.$NAME.$role"; rc=1
        fi
    done
    return "$rc"
}

overall=0
for s in "${steps[@]}"; do
    banner "$s"
    t0=$(date +%s%N)
    rc=0
    case $s in
        lint) step_lint || rc=$? ;;
        sanity) step_sanity || rc=$? ;;
        pycompat) step_pycompat || rc=$? ;;
        build) step_build || rc=$? ;;
    esac
    if [ "$rc" -eq 0 ]; then RESULT[$s]=PASS; else RESULT[$s]="FAIL($rc)"; overall=1; fi
    ds=$(( ($(date +%s%N) - t0) / 100000000 ))
    TIME[$s]=$((ds / 10)).$((ds % 10))
done

banner summary
for s in "${steps[@]}"; do
    printf '%-9s %-8s %6ss\n' "$s" "${RESULT[$s]}" "${TIME[$s]}"
done
exit $overall
