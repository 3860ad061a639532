#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Static checks of the hpc.slurm_adopt collection (the `checks` stage of
# scripts/test-all.sh), run from anywhere:
#
#   lint         ansible-lint --profile production (config: .ansible-lint, .yamllint)
#   sanity       ansible-test sanity --local, ansible-core 2.19 (the .venv) on
#                Python 3.11, on a copy of the tree at
#                build/ansible_collections/<ns>/<name> (ansible-test insists on
#                that layout).  The copy holds the git-tracked and untracked
#                not-ignored files minus galaxy.yml's build_ignore, except the
#                dev and test paths in SANITY_KEEP below, which are sanity-tested
#                although they do not ship (SANITY_ALL=1: everything).
#                Ignores: tests/sanity/ignore-2.19.txt.
#   sanity-next  the same with the newest ansible-core line PyPI has
#                (requirements/sanity-next.txt, 2.21) on Python 3.12 from pyenv,
#                in its own venv build/venv-sanity-next and its own copy of the
#                tree, on what a site runs with that core: the shipped content
#                (SANITY_NEXT_TARGETS; the 2.19 leg covers the tests too).
#                Ignores: tests/sanity/ignore-2.21.txt.  Fails (does not skip)
#                when no Python 3.12 is found; set SANITY_NEXT_PYTHON.
#   pycompat     node-side Python (roles/*/files/**/*.py, plugins/module_utils/*.py)
#                must run on Python 3.6+: vermin -t=3.6-, standard-library-only
#                imports, and for real: every file compiled, and the PAM module's
#                `self-check` (imports the whole package) run, with each Python
#                3.6 ... 3.13 found (pyenv); plugins/**/*.py compiled with the
#                target Pythons of ansible-core 2.19 (3.8+).  Fails when no 3.6 is
#                found (PYCOMPAT_PYTHONS="path ..." overrides the search).
#   meta         galaxy.yml, meta/runtime.yml and every roles/*/meta/main.yml
#                agree: licence, requires_ansible = min_ansible_version,
#                platforms listed.
#   license      COPYING and LICENSES/GPL-3.0-or-later.txt are the GPL-3.0 text;
#                NOTICE and SECURITY.md exist; scripts/spdx.py --self-test and
#                --check (an SPDX-License-Identifier line in every source file).
#   changelog    antsibull-changelog lint (fragments) and lint-changelog-yaml;
#                CHANGELOG.rst is what `antsibull-changelog generate` makes;
#                galaxy.yml's version is above the last released one.  With
#                CHECK_RELEASE=1 a fragment still marked "# planned:" fails.
#   build        ansible-galaxy collection build from the staged copy, an
#                offline install of the tarball into build/installed, then
#                checks of the installed tree: MANIFEST/FILES, version, only
#                shipped paths (no lab, Makefile, tests that need the lab, ...),
#                relative links of the top-level docs resolve, ansible-doc lists
#                and renders every module and role, and every FQCN playbook
#                passes --syntax-check from the install.
#   docs         antsibull-docs lint-collection-docs --plugin-docs on the
#                installed tree (what a docsite build would read).
#   ee           meta/execution-environment.yml: ansible-builder introspect of the
#                installed collection finds its bindep lines; the README's
#                example EE definition passes `ansible-builder create` with the
#                built tarball, its galaxy requirements install offline, the
#                builder's own introspect script finds our packages, and the
#                Debian package names exist (RPM names cannot be checked here:
#                no RHEL repository is reachable).
#   importer     galaxy-importer (what Galaxy and Automation Hub run on an
#                uploaded tarball: metadata limits, content) on the built
#                tarball, offline.  Its ansible-lint and ansible-doc passes are
#                off: the lint step runs ansible-lint, and the build and docs
#                steps render every module and role with ansible-doc.
#
# Usage: scripts/check-collection.sh [STEP ...]     (default: all of the above)
# Env:   CHECK_JOBS=N        steps run N at a time (default: number of CPUs);
#                            each step's output is printed when it ends
#        SANITY_ARGS="..."   extra args for both ansible-test sanity runs
#        SANITY_ALL=1        sanity-test all of build_ignore too
#        CHECK_TIMEOUT=N     seconds allowed per step (default 1800)
#        CHECK_RELEASE=1     release gate for the changelog step
#        ANSIBLE_TEST_HOME   where ansible-test keeps its venvs (default
#                            build/.ansible-test-home, one per checkout: several
#                            checkouts building the same shared venvs under ~
#                            at once corrupted them)
# Exit status is non-zero if any step fails; a summary with timings is printed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
STEP_TIMEOUT=${CHECK_TIMEOUT:-1800}
BUILD=$ROOT/build
LOGS=$BUILD/check-logs
INSTALLED=$BUILD/installed           # the tarball, installed: <INSTALLED>/ansible_collections/<ns>/<name>
export ANSIBLE_TEST_HOME=${ANSIBLE_TEST_HOME:-$BUILD/.ansible-test-home}
ALL_STEPS=(lint sanity sanity-next pycompat meta license changelog build docs ee importer)

# Not shipped (galaxy.yml build_ignore) but sanity-tested all the same: the
# test suites, molecule and dev scripts that sanity has always covered.
# Everything else in build_ignore (the labs, benchmarks, CI, test helpers with
# their own conventions) stays out of the sanity copies.
SANITY_KEEP=(tests/unit tests/node tests/fakes tests/fixtures molecule scripts requirements
             Makefile pytest.ini .ansible-lint .yamllint changelogs/fragments)
# What sanity-next checks: the content a site installs and runs.
SANITY_NEXT_TARGETS=(plugins/ roles/ playbooks/ meta/ tests/testinfra/)

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=("${ALL_STEPS[@]}")
for s in "${steps[@]}"; do
    case " ${ALL_STEPS[*]} " in
        *" $s "*) ;;
        *) echo "unknown step: $s (${ALL_STEPS[*]})" >&2; exit 2 ;;
    esac
done

VENV=$(bash "$ROOT/scripts/venv.sh" | tail -n1) || { echo "scripts/venv.sh failed" >&2; exit 1; }
export PATH="$VENV/bin:$PATH"
export ANSIBLE_NOCOLOR=1 NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

read -r NS NAME VERSION < <(python3 - <<'PY'
import yaml
g = yaml.safe_load(open("galaxy.yml"))
print(g["namespace"], g["name"], g["version"])
PY
) || { echo "cannot read namespace/name/version from galaxy.yml" >&2; exit 1; }
COLL=$BUILD/ansible_collections/$NS/$NAME
NEXT_ROOT=$BUILD/next
TARBALL=$BUILD/$NS-$NAME-$VERSION.tar.gz
INST=$INSTALLED/ansible_collections/$NS/$NAME

banner() { printf '\n======== %s ========\n' "$*"; }

# ---------------------------------------------------------------------------
# The staged copy: tracked + untracked-not-ignored files minus what sanity skips (above),
# as a fresh git repo so that ansible-test lists exactly these files (without
# it ansible-test would find the checkout's .git, where build/ is ignored, and
# see no files at all).  Collections the content may use (from the venv, see
# scripts/venv.sh) are linked into the same ansible_collections/ root.
stage_copy() {   # stage_copy <dest ansible_collections root>
    local root=$1 dest=$1/$NS/$NAME
    rm -rf "$root"
    mkdir -p "$dest"
    SANITY_KEEP_LIST="${SANITY_KEEP[*]}" python3 - "$dest" "${SANITY_ALL:-0}" <<'PY' || return 1
import fnmatch, os, shutil, subprocess, sys
import yaml

dest, include_all = sys.argv[1], sys.argv[2] == "1"
skip = [".git", ".venv", ".venv-*", "build", "*.tar.gz", "**/__pycache__", "*.pyc",
        ".pytest_cache", "tests/output", "mutants", ".mutmut-cache", "changelogs/.plugin-cache.yaml"]
if not include_all:
    keep = set(os.environ["SANITY_KEEP_LIST"].split())
    skip += [p for p in yaml.safe_load(open("galaxy.yml")).get("build_ignore") or [] if p not in keep]
out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                     check=True, capture_output=True).stdout.decode()
n = 0
for path in sorted(set(filter(None, out.split("\0")))):
    if not os.path.lexists(path):          # deleted in the work tree
        continue
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if any(fnmatch.fnmatch(p, pat) for pat in skip for p in prefixes):
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
    git -C "$dest" init -q
    if [ -d "$VENV/collections/ansible_collections" ]; then
        local d ns n
        for d in "$VENV"/collections/ansible_collections/*/*; do
            ns=$(basename "$(dirname "$d")"); n=$(basename "$d")
            [ "$ns" = "$NS" ] && [ "$n" = "$NAME" ] && continue
            mkdir -p "$root/$ns"
            ln -sfn "$d" "$root/$ns/$n"
        done
    fi
}

# ansible-test creates each sanity venv --without-pip and bootstraps pip with a
# get-pip.py it downloads from ci-files.testing.ansible.com -- unreachable here
# (only PyPI is).  It uses $HOME/.ansible/test/cache/get_pip_<ver>.py when
# present, so put a stand-in there: ensurepip (offline, the interpreter's own
# wheels), then pip-install the exact packages ansible-test asked for
# (pip==<ver>) from PyPI, honouring --no-setuptools/--no-wheel like get-pip.py.
install_get_pip_shim() {   # install_get_pip_shim <python that runs ansible-test> <target python version>
    local ver cache
    ver=$("$1" -c '
import sys
from ansible_test._internal.python_requirements import get_venv_packages
class P: version = sys.argv[1]
print(get_venv_packages(P())["pip"])' "$2") || return 1
    cache=$ANSIBLE_TEST_HOME/.ansible/test/cache/get_pip_${ver//./_}.py
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

# ---------------------------------------------------------------------------
step_lint() {
    timeout "$STEP_TIMEOUT" ansible-lint --profile production --nocolor
}

step_sanity() {
    [ -d "$COLL/.git" ] || { echo "FAIL: staged copy missing"; return 1; }
    install_get_pip_shim "$VENV/bin/python" 3.11 || { echo "cannot install the get-pip shim"; return 1; }
    # shellcheck disable=SC2086
    (cd "$COLL" && HOME=$ANSIBLE_TEST_HOME timeout "$STEP_TIMEOUT" \
        ansible-test sanity --local --python 3.11 --color no ${SANITY_ARGS:-})
}

# The newest ansible-core line needs Python >= 3.12, which Debian 12 does not
# have; pyenv does on this machine kind.
find_python() {   # find_python 3.12 -> path or nothing
    local v=$1 p
    p=$(command -v "python$v" 2>/dev/null) && "$p" -c 'pass' 2>/dev/null && { echo "$p"; return 0; }
    for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" /usr/local/bin/python"$v" /usr/bin/python"$v"; do
        [ -x "$p" ] && "$p" -c 'pass' 2>/dev/null && { echo "$p"; return 0; }
    done
    return 1
}

step_sanity_next() {
    local req=$ROOT/requirements/sanity-next.txt py venv=$BUILD/venv-sanity-next stamp core pyver
    [ -f "$req" ] || { echo "FAIL: $req missing"; return 1; }
    pyver=$(sed -n 's/^# python: *//p' "$req")
    py=${SANITY_NEXT_PYTHON:-$(find_python "$pyver")} || true
    if [ -z "$py" ]; then
        echo "FAIL: no Python $pyver for the second ansible-core leg (pyenv install $pyver, or set SANITY_NEXT_PYTHON)"
        return 1
    fi
    stamp=$(sha256sum < "$req" | cut -d' ' -f1)-$("$py" -c 'import sys; print(sys.version.split()[0])')
    if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
        echo "creating $venv with $py"
        rm -rf "$venv"
        "$py" -m venv "$venv" || return 1
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" 2>&1 \
            | grep -v "^WARNING: Location 'file://" || true
        "$venv/bin/ansible-test" --version >/dev/null || { echo "FAIL: ansible-test not installed in $venv"; return 1; }
        echo "$stamp" > "$venv/.stamp"
    fi
    core=$("$venv/bin/ansible" --version | sed -n '1s/.*core \([0-9.]*\).*/\1/p')
    echo "ansible-core $core on $("$venv/bin/python" -V)"
    local major=${core%.*}
    [ -f "$ROOT/tests/sanity/ignore-$major.txt" ] || { echo "FAIL: tests/sanity/ignore-$major.txt missing"; return 1; }
    [ -d "$NEXT_ROOT/ansible_collections/$NS/$NAME/.git" ] || { echo "FAIL: staged copy missing"; return 1; }
    install_get_pip_shim "$venv/bin/python" "$pyver" || { echo "cannot install the get-pip shim"; return 1; }
    # shellcheck disable=SC2086
    (cd "$NEXT_ROOT/ansible_collections/$NS/$NAME" && HOME=$ANSIBLE_TEST_HOME PATH="$venv/bin:$(dirname "$py"):$PATH" \
        timeout "$STEP_TIMEOUT" ansible-test sanity --local --python "$pyver" --color no ${SANITY_ARGS:-} \
        "${SANITY_NEXT_TARGETS[@]}")
}

# Pythons for pycompat: every 3.x from 3.6 on that is found.
pycompat_pythons() {
    if [ -n "${PYCOMPAT_PYTHONS:-}" ]; then
        local -a given
        read -r -a given <<<"$PYCOMPAT_PYTHONS"
        printf '%s\n' "${given[@]}"
        return
    fi
    local v p
    for v in 3.6 3.7 3.8 3.9 3.10 3.11 3.12 3.13 3.14; do
        p=$(find_python "$v") && echo "$p"
    done
}

step_pycompat() {
    local -a node=() plug=() pys=()
    local f rc=0
    while IFS= read -r -d '' f; do [ -f "$f" ] && node+=("$f"); done \
        < <(git ls-files -z --cached --others --exclude-standard -- 'roles/*/files/*.py' 'plugins/module_utils/*.py')
    while IFS= read -r -d '' f; do [ -f "$f" ] && plug+=("$f"); done \
        < <(git ls-files -z --cached --others --exclude-standard -- 'plugins/*.py')
    [ ${#node[@]} -gt 0 ] || { echo "FAIL: no node-side Python files found"; return 1; }
    echo "vermin -t=3.6- on ${#node[@]} node-side file(s)"
    timeout "$STEP_TIMEOUT" vermin -q -t=3.6- --violations --no-tips --eval-annotations "${node[@]}" || rc=1
    # Standard library only (files/ code may import its siblings; module_utils
    # may import the collection's own module_utils and ansible.module_utils).
    python3 - "${node[@]}" <<'PY' || rc=1
import ast, os, sys

bad = 0
for path in sys.argv[1:]:
    local, allowed = set(), ()
    if "/files/" in path:
        here = os.path.dirname(path)
        top = path.split("/files/", 1)[0] + "/files"
        for d in {here, top}:
            for n in os.listdir(d):
                if n.endswith(".py"):
                    local.add(n[:-3])
                elif os.path.isfile(os.path.join(d, n, "__init__.py")):
                    local.add(n)
    else:
        allowed = ("ansible_collections.hpc.slurm_adopt.plugins.module_utils.", "ansible.module_utils.")
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
            if root in sys.stdlib_module_names or root in local or (name + ".").startswith(allowed):
                continue
            print(f"{path}:{node.lineno}: imports {name!r}: not in the standard library")
            bad += 1
print(f"stdlib-only imports: {len(sys.argv) - 1} file(s), {bad} problem(s)")
sys.exit(1 if bad else 0)
PY
    mapfile -t pys < <(pycompat_pythons)
    local has36=0 p ver compile_src
    for p in "${pys[@]}"; do
        [ "$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = 3.6 ] && has36=1
    done
    if [ $has36 = 0 ]; then
        echo "FAIL: no Python 3.6 found (the node-side minimum); pyenv install 3.6, or set PYCOMPAT_PYTHONS"
        return 1
    fi
    # compile every file without writing .pyc (works on 3.6: no dont_write flag needed)
    compile_src='
import sys
bad = 0
for path in sys.argv[1:]:
    try:
        compile(open(path, "rb").read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        print("%s: %s" % (path, exc)); bad += 1
sys.exit(1 if bad else 0)'
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    cp -r roles/adopt_module/files "$tmp/module"
    for p in "${pys[@]}"; do
        ver=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        local line="python $ver ($p):"
        if "$p" -c "$compile_src" "${node[@]}"; then line+=" node-side compile ok"; else line+=" node-side compile FAILED"; rc=1; fi
        case $ver in
            3.6|3.7) ;;
            *) if "$p" -c "$compile_src" "${plug[@]}"; then line+=", plugins compile ok"; else line+=", plugins compile FAILED"; rc=1; fi ;;
        esac
        # the PAM module's own self-check: imports every module of the package,
        # isolated and without site, as the pam_exec line runs it
        if out=$("$p" -I -S -B "$tmp/module/pam_slurm_adopt.py" self-check 2>&1); then
            line+=", self-check ok"
        else
            line+=", self-check FAILED: $out"; rc=1
        fi
        echo "$line"
    done
    return "$rc"
}

step_meta() {
    python3 - <<'PY'
import glob, re, sys
import yaml

bad = []
g = yaml.safe_load(open("galaxy.yml"))
rt = yaml.safe_load(open("meta/runtime.yml"))
req = rt.get("requires_ansible", "")
m = re.fullmatch(r">=(\d+)\.(\d+)\.\d+", req)
if not m:
    bad.append(f"meta/runtime.yml: requires_ansible {req!r} is not '>=X.Y.Z'")
floor = f"{m.group(1)}.{m.group(2)}" if m else None
if g.get("license") != ["GPL-3.0-or-later"]:
    bad.append(f"galaxy.yml: license {g.get('license')!r}, want ['GPL-3.0-or-later']")
for key in ("repository", "documentation", "homepage", "issues"):
    if not str(g.get(key, "")).startswith("https://") or "example.invalid" in str(g.get(key)):
        bad.append(f"galaxy.yml: {key} is not a real https URL: {g.get(key)!r}")
roles = sorted(glob.glob("roles/*/meta/main.yml"))
for p in roles:
    gi = (yaml.safe_load(open(p)) or {}).get("galaxy_info", {})
    if str(gi.get("min_ansible_version")) != floor:
        bad.append(f"{p}: min_ansible_version {gi.get('min_ansible_version')!r} != requires_ansible floor {floor}")
    if gi.get("license") != "GPL-3.0-or-later":
        bad.append(f"{p}: license {gi.get('license')!r}")
    if not gi.get("platforms"):
        bad.append(f"{p}: no platforms")
    for pl in gi.get("platforms") or []:
        if pl.get("name") != "Debian":
            bad.append(f"{p}: platform {pl.get('name')} is not run by CI (docs/compatibility.md)")
for b in bad:
    print("FAIL: " + b)
print(f"meta: galaxy.yml, meta/runtime.yml ({req}), {len(roles)} role(s): {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
PY
}

# The canonical GPL-3.0 text (gnu.org gpl-3.0.txt; Debian's common-licenses/GPL-3).
GPL3_SHA256=3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986

step_license() {
    local rc=0 f
    for f in COPYING LICENSES/GPL-3.0-or-later.txt; do
        if [ ! -f "$f" ]; then echo "FAIL: $f missing"; rc=1; continue; fi
        if [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$GPL3_SHA256" ]; then
            echo "$f: the GPL-3.0 text"
        else
            echo "FAIL: $f is not the GPL-3.0 text"; rc=1
        fi
    done
    for f in NOTICE SECURITY.md; do
        [ -s "$f" ] || { echo "FAIL: $f missing or empty"; rc=1; }
    done
    if ! grep -q 'GPL-2.0-or-later' NOTICE || ! grep -qi 'pam_slurm_adopt' NOTICE; then
        echo "FAIL: NOTICE does not credit SchedMD's GPL-2.0-or-later pam_slurm_adopt"; rc=1
    fi
    python3 scripts/spdx.py --self-test || rc=1
    python3 scripts/spdx.py --check || rc=1
    return "$rc"
}

step_changelog() {
    local rc=0 tmp
    antsibull-changelog lint || rc=1
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml || rc=1
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    cp -a galaxy.yml changelogs "$tmp/"
    rm -f "$tmp/changelogs/.plugin-cache.yaml"
    if (cd "$tmp" && antsibull-changelog generate --output "$tmp/CHANGELOG.rst" --output-format rst); then
        if cmp -s "$tmp/CHANGELOG.rst" CHANGELOG.rst; then
            echo "CHANGELOG.rst is up to date with changelogs/changelog.yaml"
        else
            echo "FAIL: CHANGELOG.rst differs from antsibull-changelog generate (run it, commit the result)"
            diff -u CHANGELOG.rst "$tmp/CHANGELOG.rst" | head -40
            rc=1
        fi
    else
        echo "FAIL: antsibull-changelog generate"; rc=1
    fi
    python3 - "$VERSION" <<'PY' || rc=1
import glob, os, sys
import yaml
from packaging.version import Version

version = Version(sys.argv[1])
released = sorted(Version(v) for v in (yaml.safe_load(open("changelogs/changelog.yaml"))["releases"] or {}))
frags = sorted(glob.glob("changelogs/fragments/*.y*ml"))
planned = [f for f in frags if any(l.startswith("# planned:") for l in open(f))]
print(f"galaxy.yml version {version}; released: {', '.join(map(str, released)) or 'none'}; "
      f"{len(frags)} unreleased fragment(s), {len(planned)} still marked '# planned:'")
bad = 0
if released and version <= released[-1]:
    print(f"FAIL: galaxy.yml version {version} is not above the last release {released[-1]}")
    bad = 1
if planned and os.environ.get("CHECK_RELEASE") == "1":
    for f in planned:
        print(f"FAIL (CHECK_RELEASE=1): {f} is still marked planned")
    bad = 1
sys.exit(bad)
PY
    return "$rc"
}

step_build() {
    [ -d "$COLL/.git" ] || { echo "FAIL: staged copy missing"; return 1; }
    rm -f "$BUILD/$NS-$NAME"-*.tar.gz
    timeout "$STEP_TIMEOUT" ansible-galaxy collection build --force --output-path "$BUILD" "$COLL" || return 1
    [ -f "$TARBALL" ] || { echo "FAIL: $TARBALL not built"; return 1; }
    echo "built $TARBALL ($(du -h "$TARBALL" | cut -f1))"

    local rc=0
    rm -rf "$INSTALLED"
    ANSIBLE_COLLECTIONS_PATH="$INSTALLED" timeout "$STEP_TIMEOUT" ansible-galaxy collection install --offline --force \
        -p "$INSTALLED/ansible_collections" "$TARBALL" || return 1
    for f in MANIFEST.json FILES.json; do
        [ -f "$INST/$f" ] || { echo "FAIL: installed tree lacks $f"; rc=1; }
    done
    local pam=roles/adopt_module/files/pam_slurm_adopt.py
    cmp -s "$pam" "$INST/$pam" || { echo "FAIL: installed tree lacks an identical $pam"; rc=1; }

    # What ships: the manifest's version and readme, only allowed paths, and
    # relative links of the top-level documents that resolve in the install.
    python3 - "$INST" "$VERSION" <<'PY' || rc=1
import json, os, re, sys
import yaml

inst, version = sys.argv[1], sys.argv[2]
bad = []
man = json.load(open(os.path.join(inst, "MANIFEST.json")))["collection_info"]
if man["version"] != version:
    bad.append(f"MANIFEST.json version {man['version']} != galaxy.yml {version}")
readme = yaml.safe_load(open("galaxy.yml")).get("readme")
if readme and not os.path.isfile(os.path.join(inst, readme)):
    bad.append(f"galaxy.yml readme {readme!r} is not in the built collection")
files = [f["name"] for f in json.load(open(os.path.join(inst, "FILES.json")))["files"] if f["ftype"] == "file"]
top_ok = {"README.md", "CHANGELOG.rst", "COPYING", "NOTICE", "SECURITY.md", "CONTRIBUTING.md",
          "MANIFEST.json", "FILES.json"}
dir_ok = ("LICENSES/", "meta/", "plugins/", "roles/", "playbooks/", "docs/", "changelogs/",
          "examples/", "tests/testinfra/", "tests/sanity/")
never = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.git|\.venv[^/]*|build)(/|$)|\.pyc$|\.tar\.gz$")
for name in files:
    if never.search(name):
        bad.append(f"ships junk: {name}")
    elif "/" not in name and name not in top_ok:
        bad.append(f"ships {name}: not for an installed collection (add it to galaxy.yml build_ignore)")
    elif "/" in name and not name.startswith(dir_ok):
        bad.append(f"ships {name}: not for an installed collection (add it to galaxy.yml build_ignore)")
for need in ("COPYING", "NOTICE", "SECURITY.md", "CHANGELOG.rst", "changelogs/changelog.yaml",
             "meta/runtime.yml", "meta/execution-environment.yml"):
    if need not in files:
        bad.append(f"does not ship {need}")
# relative links in the top-level documents must resolve inside the install
link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
for doc in ("README.md", "CONTRIBUTING.md", "SECURITY.md"):
    path = os.path.join(inst, doc)
    if not os.path.isfile(path):
        continue
    for target in link.findall(open(path, encoding="utf-8").read()):
        if re.match(r"[a-z]+:", target):
            continue
        if not os.path.exists(os.path.normpath(os.path.join(inst, target))):
            bad.append(f"{doc} links to {target}, which the installed collection does not have")
# the tarball named in README.md (install command, EE example) is this version's
named = set(re.findall(r"hpc-slurm_adopt-([0-9][^\s/]*?)\.tar\.gz", open("README.md", encoding="utf-8").read()))
if named - {version}:
    bad.append(f"README.md names the tarball of version(s) {sorted(named - {version})}, galaxy.yml is {version}")
for b in bad:
    print("FAIL: " + b)
print(f"installed tree: {len(files)} files, {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
PY

    # ansible-doc sees exactly this install (no sys.path scan of the venv,
    # whose collections/ links hpc.slurm_adopt to the work tree).
    local -a adoc=(env ANSIBLE_COLLECTIONS_PATH="$INSTALLED" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ansible-doc)
    local listed mod role
    local -a mods=() roles=()
    for mod in "$COLL"/plugins/modules/*.py; do [ -e "$mod" ] && mods+=("$NS.$NAME.$(basename "$mod" .py)"); done
    for role in "$COLL"/roles/*/meta/argument_specs.y*ml; do
        [ -e "$role" ] && roles+=("$NS.$NAME.$(basename "$(dirname "$(dirname "$role")")")")
    done
    listed=$("${adoc[@]}" -t module -l "$NS.$NAME" 2>&1) || { echo "$listed"; echo "FAIL: ansible-doc -l"; rc=1; }
    printf 'ansible-doc -l %s:\n%s\n' "$NS.$NAME" "$listed"
    for mod in "${mods[@]}"; do
        grep -q "^$mod " <<<"$listed" || { echo "FAIL: ansible-doc -l does not list $mod"; rc=1; }
    done
    local kind json
    for kind in module role; do
        local -a names=()
        if [ $kind = module ]; then names=("${mods[@]}"); else names=("${roles[@]}"); fi
        [ ${#names[@]} -gt 0 ] || continue
        json=$("${adoc[@]}" -t "$kind" --json "${names[@]}" 2>"$BUILD/ansible-doc.err") \
            || { cat "$BUILD/ansible-doc.err"; echo "FAIL: ansible-doc -t $kind"; rc=1; continue; }
        python3 -c '
import json, sys
kind, names = sys.argv[1], sys.argv[2:]
data = json.load(sys.stdin)
bad = 0
for n in names:
    d = data.get(n) or {}
    ok = bool(d.get("doc") or d.get("entry_points"))
    if kind == "module":
        ok = ok and bool(d.get("examples")) and "return" in d
    print("ansible-doc -t %s %s: %s" % (kind, n, "ok" if ok else "FAIL (no documentation rendered)"))
    bad += not ok
sys.exit(1 if bad else 0)' "$kind" "${names[@]}" <<<"$json" || rc=1
    done

    # The FQCN playbooks, from the install (what a site runs).
    local pb
    for pb in "$INST"/playbooks/*.yml; do
        [ -e "$pb" ] || continue
        pb=$NS.$NAME.$(basename "$pb" .yml)
        if env ANSIBLE_COLLECTIONS_PATH="$INSTALLED" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
                ansible-playbook -i localhost, --syntax-check "$pb" >"$BUILD/syntax.out" 2>&1; then
            echo "ansible-playbook --syntax-check $pb: ok"
        else
            cat "$BUILD/syntax.out"; echo "FAIL: ansible-playbook --syntax-check $pb"; rc=1
        fi
    done
    return "$rc"
}

step_docs() {
    [ -f "$INST/MANIFEST.json" ] || { echo "FAIL: no installed collection (the build step must run first)"; return 1; }
    # antsibull-docs copies the collection before linting it, with `git
    # ls-files` when the path is inside a git work tree.  build/installed is
    # inside this checkout, where build/ is git-ignored: it would copy (and
    # lint) nothing and report "clean".  GIT_CEILING_DIRECTORIES stops git
    # from finding the checkout; the guard below makes sure it did.
    export GIT_CEILING_DIRECTORIES=$INSTALLED
    if git -C "$INST" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        echo "FAIL: $INST is inside a git work tree; antsibull-docs would lint an empty copy"
        return 1
    fi
    (cd "$INST" && ANSIBLE_COLLECTIONS_PATH="$INSTALLED" ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
        timeout "$STEP_TIMEOUT" antsibull-docs lint-collection-docs --plugin-docs .) \
        && echo "antsibull-docs lint-collection-docs --plugin-docs: clean"
}

step_ee() {
    [ -f "$INST/MANIFEST.json" ] || { echo "FAIL: no installed collection (the build step must run first)"; return 1; }
    local rc=0 tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    # 1. ansible-builder finds the collection's EE metadata in the install.
    ansible-builder introspect --sanitize "$INSTALLED" > "$tmp/introspect.yml" || { echo "FAIL: ansible-builder introspect"; return 1; }
    cat "$tmp/introspect.yml"
    # 2. The README's example EE definition, with the tarball just built.
    python3 - "$tmp" "$TARBALL" <<'PY' || return 1
import os, re, shutil, sys

tmp, tarball = sys.argv[1], sys.argv[2]
text = open("README.md", encoding="utf-8").read()
blocks = re.findall(r"```yaml\n(# execution-environment\.yml.*?)```", text, re.S)
if len(blocks) != 1:
    sys.exit("FAIL: README.md must have one ```yaml block starting with '# execution-environment.yml' (found %d)" % len(blocks))
ee = blocks[0]
names = set(re.findall(r"hpc-slurm_adopt-[0-9][^\s/]*\.tar\.gz", ee))
want = os.path.basename(tarball)
if names != {want}:
    sys.exit("FAIL: README.md's EE example names %s, the collection builds %s" % (sorted(names), want))
open(os.path.join(tmp, "execution-environment.yml"), "w").write(ee)
shutil.copy(tarball, os.path.join(tmp, want))
print("README.md EE example: %d lines, collection %s" % (ee.count("\n"), want))
PY
    (cd "$tmp" && ansible-builder create -f execution-environment.yml --context ctx >/dev/null) \
        || { echo "FAIL: ansible-builder create of the README's EE example"; return 1; }
    echo "ansible-builder create: ok ($(grep -c '' "$tmp/ctx/Containerfile") lines of Containerfile)"
    # 3. Its galaxy stage (what the Containerfile runs in _build), offline,
    #    then the builder stage's own introspection script.
    (cd "$tmp/ctx/_build" && ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ansible-galaxy collection install --offline \
        -r requirements.yml --collections-path "$tmp/ee-collections" >/dev/null) \
        || { echo "FAIL: the EE's galaxy requirements do not install offline"; return 1; }
    python3 "$tmp/ctx/_build/scripts/introspect.py" introspect --sanitize \
        --write-bindep="$tmp/bindep.txt" --write-pip="$tmp/requirements.txt" "$tmp/ee-collections" >/dev/null \
        || { echo "FAIL: the EE builder's introspect.py"; return 1; }
    echo "EE bindep.txt (as the builder stage writes it):"; sed 's/^/  /' "$tmp/bindep.txt"
    # 4. Per platform, what bindep would install; the Debian names must exist.
    python3 - "$tmp/bindep.txt" <<'PY' || rc=1
import subprocess, sys
from bindep.depends import Depends

deps = Depends(open(sys.argv[1]).read())
bad = 0
for platform in ("dpkg", "rpm"):
    rules = deps.active_rules(["platform:" + platform])
    names = sorted({r[0] for r in rules})
    print("bindep platform:%s -> %s" % (platform, ", ".join(names) or "nothing"))
    if not any(n.startswith("openssh-client") for n in names):
        print("FAIL: no OpenSSH client for platform:%s" % platform); bad = 1
    if platform == "dpkg":
        for n in names:
            known = subprocess.run(["dpkg-query", "-W", n], capture_output=True).returncode == 0 or \
                subprocess.run(["apt-cache", "show", n], capture_output=True).returncode == 0
            if not known:
                print("FAIL: %s is not a Debian package" % n); bad = 1
print("rpm package names are not checked: no RHEL repository is reachable from here")
sys.exit(bad)
PY
    return "$rc"
}

step_importer() {
    [ -f "$TARBALL" ] || { echo "FAIL: no tarball (the build step must run first)"; return 1; }
    local tmp rc=0
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    (cd "$tmp" && GALAXY_IMPORTER_RUN_ANSIBLE_LINT=false GALAXY_IMPORTER_RUN_ANSIBLE_DOC=false \
        GALAXY_IMPORTER_RUN_ANSIBLE_TEST=false \
        GALAXY_IMPORTER_CHECK_CHANGELOG=true ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
        timeout "$STEP_TIMEOUT" python3 -m galaxy_importer.main "$TARBALL") || rc=1
    [ -f "$tmp/importer_result.json" ] && python3 - "$tmp/importer_result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
contents = r.get("contents") or []
kinds = {}
for c in contents:
    kinds[c.get("content_type")] = kinds.get(c.get("content_type"), 0) + 1
print("galaxy-importer found: " + ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())))
PY
    return "$rc"
}

# ---------------------------------------------------------------------------
run_step() {
    case $1 in
        lint) step_lint ;;
        sanity) step_sanity ;;
        sanity-next) step_sanity_next ;;
        pycompat) step_pycompat ;;
        meta) step_meta ;;
        license) step_license ;;
        changelog) step_changelog ;;
        build) step_build ;;
        docs) step_docs ;;
        ee) step_ee ;;
        importer) step_importer ;;
    esac
}

want() { case " ${steps[*]} " in *" $1 "*) return 0 ;; esac; return 1; }

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.rc "$LOGS"/*.time "$LOGS"/*.cpu
t_all=$(date +%s%N)
# Staged copies first (sanity, sanity-next and build read them).
if want sanity || want build; then
    stage_copy "$BUILD/ansible_collections" || { echo "staging failed" >&2; exit 1; }
fi
if want sanity-next; then
    stage_copy "$NEXT_ROOT/ansible_collections" || { echo "staging failed" >&2; exit 1; }
fi

# Chains of steps that depend on each other run in order; chains run in
# parallel, CHECK_JOBS at a time.  The long ones go first.
chains=()
for c in "sanity" "sanity-next" "lint" "build docs ee importer" "pycompat meta license changelog"; do
    sel=()
    for s in $c; do want "$s" && sel+=("$s"); done
    [ ${#sel[@]} -gt 0 ] && chains+=("${sel[*]}")
done
JOBS=${CHECK_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1

run_chain() {
    local s t0 rc TIMEFORMAT='%U %S'
    for s in $1; do
        t0=$(date +%s%N)
        echo "$(date +%T) start $s"
        rc=0
        # `time` of the step's whole process tree: user and system CPU seconds
        { time { banner "$s"; run_step "$s"; } > "$LOGS/$s.log" 2>&1; } 2> "$LOGS/$s.cpu" || rc=$?
        echo "$rc" > "$LOGS/$s.rc"
        echo $(( ($(date +%s%N) - t0) / 100000000 )) > "$LOGS/$s.time"
        echo "$(date +%T) end   $s ($([ "$rc" = 0 ] && echo PASS || echo "FAIL($rc)"))"
    done
}

for c in "${chains[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n 2>/dev/null || sleep 1; done
    run_chain "$c" &
done
wait

overall=0
for s in "${ALL_STEPS[@]}"; do
    want "$s" || continue
    cat "$LOGS/$s.log" 2>/dev/null
done
banner summary
printf '%-12s %-8s %8s %8s\n' step result wall cpu
cpu_all=0
for s in "${ALL_STEPS[@]}"; do
    want "$s" || continue
    rc=$(cat "$LOGS/$s.rc" 2>/dev/null || echo 99)
    ds=$(cat "$LOGS/$s.time" 2>/dev/null || echo 0)
    cpu=$(awk '{printf "%.1f", $1 + $2}' "$LOGS/$s.cpu" 2>/dev/null || echo 0)
    cpu_all=$(awk -v a="$cpu_all" -v b="$cpu" 'BEGIN {printf "%.1f", a + b}')
    if [ "$rc" = 0 ]; then res=PASS; else res="FAIL($rc)"; overall=1; fi
    printf '%-12s %-8s %7ss %7ss\n' "$s" "$res" "$((ds / 10)).$((ds % 10))" "$cpu"
done
ds=$(( ($(date +%s%N) - t_all) / 100000000 ))
printf '%-12s %-8s %7ss %7ss  (CHECK_JOBS=%s, %s CPUs, load %s)\n' total "" "$((ds / 10)).$((ds % 10))" "$cpu_all" \
    "$JOBS" "$(nproc 2>/dev/null)" "$(cut -d' ' -f1-3 /proc/loadavg)"
exit $overall
