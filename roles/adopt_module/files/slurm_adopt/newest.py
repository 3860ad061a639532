# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The "newest" job, by the rule of the running Slurm version."""

import os

from .constants import PROTOCOL_26_05, AdoptError


CGROUP_BASE = "/sys/fs/cgroup"


def cgroup_version(conf, mounts="/proc/self/mounts"):
    """_check_cg_version(): CgroupPlugin from cgroup.conf; "autodetect" (the
    default) looks at the file systems under /sys/fs/cgroup as Slurm's
    autodetect_cgroup_version() does with statfs(2), whatever
    CgroupMountpoint says: cgroup2 there is v2; tmpfs there means
    /sys/fs/cgroup/systemd decides (cgroup2, with /sys/fs/cgroup/unified
    present: v2; cgroup: v1). 0 when it cannot tell."""
    plugin = conf.cgroup.get("cgroupplugin") or "autodetect"
    if plugin == "autodetect":
        table = _mount_table(mounts)
        fstype = _fs_type(CGROUP_BASE, table)
        if fstype == "cgroup2":
            return 2
        if fstype == "tmpfs":
            systemd_type = _fs_type(CGROUP_BASE + "/systemd", table)
            if systemd_type == "cgroup2":
                return 2 if _fs_type(CGROUP_BASE + "/unified", table) else 0
            if systemd_type == "cgroup":
                return 1
        return 0
    if plugin == "cgroup/v1":
        return 1
    if plugin == "cgroup/v2":
        return 2
    return 0


def _mount_table(path):
    """[(mount point, fs type)] in mount order, from /proc/self/mounts."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return []
    table = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace(b"\\040", b" ").replace(b"\\011", b"\t")
            table.append((os.fsdecode(point.replace(b"\\134", b"\\")),
                          fields[2].decode("ascii", "replace")))
    return table


def _fs_type(path, table):
    """The type of the file system that holds path (what statfs(2) reports):
    the last mount on the longest mount point that contains it; None when
    the path does not exist."""
    if not os.path.isdir(path):
        return None
    path = os.path.realpath(path)
    best, found = -1, None
    for point, fstype in table:
        inside = path == point or point == "/" or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:
            best, found = len(point), fstype
    return found


def v1_job_cgroup_dirs(conf, uid, job_id, opt_nodename, nodename):
    """Directories whose mtime orders the jobs under cgroup/v1.

    The C module stats <mnt>/<ctl>/slurm[_<nodename=>]/uid_<uid>/job_<id>,
    which on builds with --enable-multiple-slurmd (Debian's) is
    slurm_<NodeName> even when nodename= is not given; we try the C module's
    path first, then that one."""
    if conf.cgroup_flag("ConstrainRAMSpace") or conf.cgroup_flag("ConstrainSwapSpace"):
        controller = "memory"
    elif conf.cgroup_flag("ConstrainCores"):
        controller = "cpuset"
    elif conf.cgroup_flag("ConstrainDevices"):
        controller = "devices"
    else:
        controller = "freezer"
    base = os.path.join(conf.cgroup_mountpoint, controller)
    roots = ["slurm_%s" % opt_nodename] if opt_nodename else ["slurm", "slurm_%s" % nodename]
    return [os.path.join(base, root, "uid_%u" % uid, "job_%u" % job_id) for root in roots]


def pick_newest(steps, conf, uid, opts, nodename, version, log):
    """The user's "newest" job, as the C module of that Slurm version picks:
    26.05: socket ctime, then the highest job id; up to 25.11: cgroup/v2 the
    highest job id, cgroup/v1 the job cgroup's mtime (ties: the last one)."""
    if not steps:
        return None
    if version >= PROTOCOL_26_05:
        return sorted(steps, key=lambda s: (s.ctime, s.job_id), reverse=True)[0]
    cg_ver = cgroup_version(conf)
    log.debug("Detected cgroup version %d" % cg_ver)
    if cg_ver == 2:
        return max(steps, key=lambda s: s.job_id)
    if cg_ver != 1:
        raise AdoptError("cgroup version cannot be determined")
    best, best_time = None, 0
    for step in steps:
        mtime = 0
        for path in v1_job_cgroup_dirs(conf, uid, step.job_id, opts.node_name, nodename):
            try:
                mtime = int(os.stat(path).st_mtime)
                break
            except OSError:
                continue
        else:
            log.info("Couldn't stat path '%s'" % path)
        if mtime >= best_time:
            best, best_time = step, mtime
    return best
