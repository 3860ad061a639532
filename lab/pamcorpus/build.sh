#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build the PAM corpus of tests/corpus: the cached Debian chroots with the real
# generators (lab/pamcorpus/chroot.sh: bookworm, trixie, sid), then every tree
# of tests/corpus/manifest.yml rendered into OUT (lab/pamcorpus/render.py).
#
#   lab/pamcorpus/build.sh [--out DIR] [--force] [--only NAME ...]
#
# stdout: OUT (default: build/pamcorpus in the repository); everything else on
# stderr.  Exit status non-zero when anything failed (a missing tool, no
# network to the Debian mirror, a generator that failed): the corpus test then
# fails, it does not skip.
#
# Cold (no chroot cached): three debootstraps + apt-get, about 10 minutes.
# Warm: the chroots are reused (cache key: chroot.sh's content), the trees are
# rendered again only when an input changed (a few seconds), else nothing.
# Environment: PAMCORPUS_CACHE, PAMCORPUS_MIRROR (see chroot.sh),
# PAMCORPUS_PYTHON (a python3 with PyYAML; default: the repository's .venv).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/build/pamcorpus
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --force) ARGS+=(--force); shift ;;
        --only) shift; ARGS+=(--only); while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do ARGS+=("$1"); shift; done ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
        *) echo "pamcorpus/build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "pamcorpus/build.sh: must run as root" >&2; exit 1; }
PY=${PAMCORPUS_PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$(dirname "$OUT")"
exec "$PY" "$HERE/render.py" --out "$OUT" "${ARGS[@]}"
