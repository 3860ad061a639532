# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot and restore the files a pam_slurm_adopt rollout may change.

Standard library only, Python 3.6+.  Run on the node by the
hpc.slurm_adopt.adopt_preflight role (ansible.builtin.script):

    slurm_adopt_snapshot.py save    DIR PATH...   # copy PATHs (files, dirs, symlinks) into DIR
    slurm_adopt_snapshot.py restore DIR           # put every PATH back exactly as saved:
                                                  # content, mode, owner, symlinks; paths that
                                                  # did not exist are removed again
    slurm_adopt_snapshot.py diff    DIR           # what differs now from the snapshot
    slurm_adopt_snapshot.py drop    DIR

Prints one JSON object (changed, paths, differences).  `save` keeps an
existing snapshot unless --force (the rollout drops its snapshot once the
change succeeded or was rolled back, so one that is still there was left by
an interrupted run and is the last known-good state); it then reports
kept_existing.
"""

import json
import os
import shutil
import stat
import sys

MANIFEST = "manifest.json"


def _entries(path):
    """(relative path, lstat) of path and everything below it."""
    out = []
    try:
        st = os.lstat(path)
    except OSError:
        return out
    out.append((path, st))
    if stat.S_ISDIR(st.st_mode):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                try:
                    out.append((full, os.lstat(full)))
                except OSError:
                    pass
    return out


def _describe(full, st):
    info = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISLNK(st.st_mode):
        info["type"] = "link"
        info["target"] = os.readlink(full)
    elif stat.S_ISDIR(st.st_mode):
        info["type"] = "dir"
    elif stat.S_ISREG(st.st_mode):
        info["type"] = "file"
    else:
        info["type"] = "other"
    return info


def _store_name(full):
    return "data" + full


def save(snapdir, paths, force=False):
    manifest_path = os.path.join(snapdir, MANIFEST)
    if os.path.exists(manifest_path) and not force:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        return {"changed": False, "paths": manifest["paths"], "kept_existing": True}
    if os.path.exists(snapdir):
        shutil.rmtree(snapdir)
    os.makedirs(snapdir, 0o700)
    manifest = {"paths": {}, "entries": {}}
    for path in paths:
        path = os.path.normpath(path)
        entries = _entries(path)
        manifest["paths"][path] = bool(entries)
        for full, st in entries:
            info = _describe(full, st)
            manifest["entries"][full] = info
            if info["type"] == "file":
                dest = os.path.join(snapdir, _store_name(full).lstrip("/"))
                if not os.path.isdir(os.path.dirname(dest)):
                    os.makedirs(os.path.dirname(dest), 0o700)
                shutil.copyfile(full, dest)
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, manifest_path)
    return {"changed": True, "paths": manifest["paths"]}


def _load(snapdir):
    with open(os.path.join(snapdir, MANIFEST)) as handle:
        return json.load(handle)


def _same(full, info, snapdir):
    try:
        st = os.lstat(full)
    except OSError:
        return False
    now = _describe(full, st)
    if now != info:
        return False
    if info["type"] == "file":
        with open(full, "rb") as cur, open(os.path.join(snapdir, _store_name(full).lstrip("/")),
                                           "rb") as old:
            return cur.read() == old.read()
    return True


def diff(snapdir):
    manifest = _load(snapdir)
    out = []
    for path in manifest["paths"]:
        for full, _st in _entries(path):
            if full not in manifest["entries"]:
                out.append("new: %s" % full)
    for full, info in sorted(manifest["entries"].items()):
        if not _same(full, info, snapdir):
            out.append("changed: %s" % full if os.path.lexists(full) else "removed: %s" % full)
    return out


def _remove(full):
    if os.path.isdir(full) and not os.path.islink(full):
        shutil.rmtree(full)
    elif os.path.lexists(full):
        os.unlink(full)


def restore(snapdir):
    manifest = _load(snapdir)
    changes = diff(snapdir)
    if not changes:
        return {"changed": False, "differences": []}
    entries = manifest["entries"]
    # 1. remove what did not exist (deepest first)
    for path in manifest["paths"]:
        for full, _st in sorted(_entries(path), key=lambda e: -len(e[0])):
            if full not in entries:
                _remove(full)
    # 2. recreate directories, then files and links (parents first)
    for full in sorted(entries, key=len):
        info = entries[full]
        if info["type"] == "dir":
            if os.path.lexists(full) and (os.path.islink(full) or not os.path.isdir(full)):
                _remove(full)
            if not os.path.isdir(full):
                os.makedirs(full)
        elif info["type"] == "link":
            if os.path.lexists(full) and not (os.path.islink(full)
                                              and os.readlink(full) == info["target"]):
                _remove(full)
            if not os.path.lexists(full):
                os.symlink(info["target"], full)
        elif info["type"] == "file":
            if os.path.isdir(full) and not os.path.islink(full):
                _remove(full)
            if not _same(full, info, snapdir):
                src = os.path.join(snapdir, _store_name(full).lstrip("/"))
                tmp = full + ".slurm-adopt-restore"
                shutil.copyfile(src, tmp)
                os.chmod(tmp, info["mode"])
                os.chown(tmp, info["uid"], info["gid"])
                os.rename(tmp, full)
    # 3. ownership and modes (links: owner only)
    for full, info in entries.items():
        if info["type"] == "link":
            os.lchown(full, info["uid"], info["gid"])
        elif info["type"] in ("dir", "file"):
            os.chown(full, info["uid"], info["gid"])
            os.chmod(full, info["mode"])
    left = diff(snapdir)
    return {"changed": True, "differences": changes, "left": left, "failed": bool(left)}


def main(argv):
    if len(argv) < 2 or argv[0] not in ("save", "restore", "diff", "drop"):
        sys.stderr.write(__doc__)
        return 2
    cmd, snapdir = argv[0], argv[1]
    if cmd == "save":
        args = [a for a in argv[2:] if a != "--force"]
        result = save(snapdir, args, force="--force" in argv[2:])
    elif cmd == "restore":
        result = restore(snapdir)
    elif cmd == "diff":
        changes = diff(snapdir)
        result = {"changed": False, "differences": changes}
    else:
        existed = os.path.exists(snapdir)
        if existed:
            shutil.rmtree(snapdir)
        result = {"changed": existed}
    print(json.dumps(result, sort_keys=True))
    return 1 if result.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
