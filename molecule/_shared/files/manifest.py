# SPDX-License-Identifier: GPL-3.0-or-later
"""Print a manifest of the given paths, one line per filesystem object.

Each line: path, type, mode, owner:group, then the sha256 of a regular file's
bytes or the target of a symlink.  A missing path prints "absent".  Used by
molecule/_shared/prepare.yml (snapshot before converge) and by the removal
scenario's tests (after the roles ran with state=absent).
"""
import hashlib
import os
import stat
import sys


def describe(path):
    """One manifest line for path."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "%s absent" % path
    mode = stat.S_IMODE(st.st_mode)
    head = "%s %%s %04o %d:%d" % (path, mode, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return head % "link" + " -> " + os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return head % "dir"
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        return head % "file" + " " + digest
    return head % "other"


def walk(top):
    """Yield top and everything below it (symlinks are not followed)."""
    yield top
    if os.path.isdir(top) and not os.path.islink(top):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                yield os.path.join(root, name)


def main(paths):
    """Print the manifest of every path."""
    for top in paths:
        for path in walk(top):
            print(describe(path))


if __name__ == "__main__":
    main(sys.argv[1:])
