# SPDX-License-Identifier: GPL-3.0-or-later
# Shared names of the fleet lab (sourced by up.sh, down.sh, test.sh, demo.sh).
# shellcheck shell=bash
# shellcheck disable=SC2034
NET=saf-net
# /etc/slurm of every container: one podman volume, as a site shares it over
# NFS (or Bright's /cm/shared): one slurm.conf, written by whichever host edits it.
SLURM_VOLUME=saf-slurm-etc
CONTAINERS=(saf-ctl saf-node1 saf-node2 saf-login)
declare -A HOSTS=([saf-ctl]=ctl [saf-node1]=node1 [saf-node2]=node2 [saf-login]=login)
USERS=(fleetalice fleetbob fleetadmin fleetops)
STATE=${FLEET_STATE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.state}
FLEET_WAIT=${FLEET_WAIT:-90}

log() { printf 'fleet: %s\n' "$*" >&2; }
die() { printf 'fleet: ERROR: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.5
    done
}

# lab_slurm_conf CLUSTER NODES [TASKPLUGIN] [PROLOGFLAGS]: the body of the
# labs' slurm.conf (lab/fleet/up.sh: node[1-2]; lab/fleet/scale.sh: node[1-N]),
# stock for pam_slurm_adopt unless TASKPLUGIN/PROLOGFLAGS say otherwise: no
# PrologFlags=Contain, no task/cgroup (the rollout's work).
lab_slurm_conf() {
    cat <<EOF
ClusterName=$1
SlurmctldHost=ctl
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/cgroup
TaskPlugin=${3:-task/affinity}
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
${4:+PrologFlags=$4}
NodeName=$2 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=batch Nodes=$2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
}
