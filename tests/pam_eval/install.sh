#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# What the real-libpam evaluator's tests need on a fresh Debian 12, as root:
# gcc and the Linux-PAM headers (the test-only stand-in module is compiled at
# test time), libnss-extrausers (directory users that resolve through NSS but
# are not in /etc/passwd), util-linux.  Idempotent; called by
# tests/unit/pam_eval/conftest.py when something is missing.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "pam_eval/install.sh: must run as root" >&2; exit 1; }
PKGS=(gcc libc6-dev libpam0g-dev libpam-modules libnss-extrausers util-linux debootstrap)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "pam_eval/install.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
OPTS=(-o DPkg::Lock::Timeout=300)
flock /run/lock/saf-apt.lock apt-get "${OPTS[@]}" update -qq
flock /run/lock/saf-apt.lock apt-get "${OPTS[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
