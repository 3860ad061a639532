#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Create or refresh the development virtualenv <repo>/.venv (idempotent).
#
#   scripts/venv.sh            # prints the venv path on stdout (last line)
#   VENV=/some/dir scripts/venv.sh
#
# What it does:
#   1. apt-get installs python3-venv, python3-pip, git, shellcheck if missing
#      (shellcheck is used by ansible-test sanity; it is skipped without it).
#   2. Creates the venv with Debian's /usr/bin/python3 (3.11), never pyenv's.
#   3. pip installs requirements/dev.txt with requirements/constraints.txt.
#   4. Unpacks the collections listed in requirements/collections.yml out of
#      the `ansible` wheel pinned in requirements/collections.txt into
#      $VENV/collections/ansible_collections/ and drops a .pth file so that
#      ansible (which scans sys.path for ansible_collections/) finds them
#      without ANSIBLE_COLLECTIONS_PATH.
#   5. Links $VENV/collections/ansible_collections/<ns>/<name> -> the repo
#      root, so ansible-lint (offline mode does not install the collection
#      under test), ansible-playbook hpc.slurm_adopt.<playbook>, molecule and
#      ansible-doc in this venv resolve hpc.slurm_adopt.* to the work tree.
#   A stamp ($VENV/.stamp) holds a hash of those inputs and this script;
#   when it matches, nothing is done.  FORCE=1 rebuilds from scratch.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=/usr/bin/python3
REQ=$ROOT/requirements
STAMP=$VENV/.stamp

log() { printf 'venv.sh: %s\n' "$*" >&2; }

# <ns>/<name> of this collection -> the work tree (step 5; also run when
# the venv is otherwise up to date, since it is cheap and galaxy.yml may change).
link_self() {
    local ns name
    ns=$(sed -n 's/^namespace: *//p' "$ROOT/galaxy.yml" | tr -d "\"' ")
    name=$(sed -n 's/^name: *//p' "$ROOT/galaxy.yml" | tr -d "\"' ")
    if [ -z "$ns" ] || [ -z "$name" ]; then log "cannot read namespace/name from galaxy.yml"; return 1; fi
    mkdir -p "$VENV/collections/ansible_collections/$ns"
    ln -sfn "$ROOT" "$VENV/collections/ansible_collections/$ns/$name"
}
# pip, minus the "Location 'file:///...' is ignored" noise that this
# machine's pip.conf (extra-index-url to absent dirs) adds to every lookup.
pip() {
    "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "^WARNING: Location 'file://" || true; } >&2
    return "${PIPESTATUS[0]}"
}

# ---- 1. OS packages -------------------------------------------------------
need_pkgs=()
for pkg in python3-venv python3-pip git shellcheck; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        need_pkgs+=("$pkg")
    fi
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to install: ${need_pkgs[*]}"; exit 1; }
        SUDO=sudo
    fi
    log "installing OS packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
[ -x "$PY" ] || { log "$PY not found"; exit 1; }

# ---- stamp ------------------------------------------------------------------
want=$(cat "${BASH_SOURCE[0]}" "$REQ/dev.txt" "$REQ/constraints.txt" \
           "$REQ/collections.txt" "$REQ/collections.yml" \
       | sha256sum | cut -d' ' -f1)
want="$want $("$PY" -c 'import sys; print(sys.version.split()[0])')"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
        && [ -x "$VENV/bin/ansible-lint" ]; then
    link_self
    log "up to date"
    echo "$VENV"
    exit 0
fi

# ---- 2. venv ----------------------------------------------------------------
t0=$SECONDS
if [ "${FORCE:-0}" = 1 ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    log "creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"

# ---- 3. pip -----------------------------------------------------------------
log "installing requirements/dev.txt"
pip install -q -r "$REQ/dev.txt" -c "$REQ/constraints.txt"

# ---- 4. collections out of the ansible wheel ----------------------------------
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
ansible_pin=$(grep -E '^ansible==' "$REQ/collections.txt")
log "unpacking collections from $ansible_pin"
pip download -q --no-deps -d "$dl" "$ansible_pin"
"$VENV/bin/python" - "$dl" "$VENV" "$REQ/collections.yml" <<'PY'
import glob, json, os, shutil, sys, sysconfig, zipfile
import yaml

dl, venv, spec = sys.argv[1:4]
wanted = yaml.safe_load(open(spec))["collections"]
dest = os.path.join(venv, "collections")
shutil.rmtree(dest, ignore_errors=True)
(wheel,) = glob.glob(os.path.join(dl, "ansible-*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for c in wanted:
        ns, name = c["name"].split(".")
        prefix = f"ansible_collections/{ns}/{name}/"
        members = [n for n in names if n.startswith(prefix)]
        if not members:
            sys.exit(f"{c['name']} is not in {os.path.basename(wheel)}")
        have = json.loads(z.read(prefix + "MANIFEST.json"))["collection_info"]["version"]
        if str(c["version"]) != have:
            sys.exit(f"{c['name']}: collections.yml wants {c['version']}, wheel has {have}")
        z.extractall(dest, members)
        print(f"venv.sh:   {c['name']} {have} ({len(members)} files)", file=sys.stderr)
# ansible-core adds every sys.path entry holding ansible_collections/ to its
# collection search path, so this .pth makes them visible with no env var.
pth = os.path.join(sysconfig.get_paths()["purelib"], "zz_hpc_slurm_adopt_collections.pth")
with open(pth, "w") as f:
    f.write(dest + "\n")
PY

link_self
echo "$want" > "$STAMP"
log "done in $((SECONDS - t0))s"
echo "$VENV"
