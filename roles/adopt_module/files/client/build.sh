#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Build pam_slurm_adopt_client.so with the distribution's compiler and PAM
# headers (Debian: gcc libpam0g-dev; RHEL family: gcc pam-devel).
#
#   build.sh OUTPUT [SOCKET [PYTHON [LAUNCHER]]]
#
# SOCKET    the service's socket   (default /run/slurm-adopt/adopt.sock)
# PYTHON    interpreter of the fallback child (default /usr/bin/python3)
# LAUNCHER  slurm_adopt_service.py of the installed package
#           (default /usr/lib/slurm-adopt/slurm_adopt_service.py)
# CC, CFLAGS and EXTRA_DEFINES (e.g. -DSAF_TOTAL_MS=10000) from the environment.
# The module is written to OUTPUT.tmp, then renamed: an sshd that has the old
# file mapped keeps it intact.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTPUT [SOCKET [PYTHON [LAUNCHER]]]" >&2; exit 2; }
out=$1
socket=${2:-/run/slurm-adopt/adopt.sock}
python=${3:-/usr/bin/python3}
launcher=${4:-/usr/lib/slurm-adopt/slurm_adopt_service.py}
for path in "$socket" "$python" "$launcher"; do
    case $path in
        /*) ;;
        *) echo "$0: $path is not an absolute path" >&2; exit 2 ;;
    esac
    case $path in
        *[!A-Za-z0-9._/+-]*) echo "$0: $path has characters other than A-Za-z0-9._/+-" >&2; exit 2 ;;
    esac
done
src=$(dirname "$0")/pam_slurm_adopt_client.c
# CFLAGS and EXTRA_DEFINES are lists of words.
# shellcheck disable=SC2086
${CC:-gcc} ${CFLAGS:--O2} -fPIC -shared -Wall -Wextra -Werror \
    -DSAF_SOCKET="\"$socket\"" -DSAF_PYTHON="\"$python\"" -DSAF_LAUNCHER="\"$launcher\"" \
    ${EXTRA_DEFINES:-} -o "$out.tmp" "$src" -lpam
chmod 0644 "$out.tmp"
mv -f "$out.tmp" "$out"
