#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install everything the host lab needs on a fresh Debian 12 (bookworm).
# Idempotent and non-interactive. Packages only: no daemons are started here
# (see up.sh), and no configuration outside the lab is changed.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: must run as root" >&2
    exit 1
fi

PKGS=(
    slurmd slurmctld slurm-client munge
    openssh-server openssh-client
    libpam-python libpam-slurm-adopt pamtester
    rsyslog procps python3 util-linux passwd iproute2
    gcc libc6-dev libpam0g-dev   # tests/node/pam_call.c, the direct PAM driver of the node tests
    prometheus-node-exporter     # tests/unit/test_drift_metrics.py scrapes the drift check's metrics from it
    debootstrap                  # the PAM corpus chroots (lab/pamcorpus) and the image-mode root (lab/image)
    xvfb xauth                   # tests/node/test_x11.py: an X display for salloc --x11, xauth for Slurm's X11
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install.sh: all ${#PKGS[@]} packages already installed"
    exit 0
fi

echo "install.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait (bounded) for a concurrent apt/dpkg instead of failing at once.
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get "${APT_OPTS[@]}" update
apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"
echo "install.sh: done"
