# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte-compile the slurm_adopt package for the Python that runs this script.

Run by the adopt_module role on the node (ansible.builtin.script with the
node's python3). pam_python runs the interpreter with dont_write_bytecode, so
without up-to-date .pyc files every ssh login would compile the package from
source. Prints one line per module that is (or, with --check, would be)
compiled; prints nothing when every .pyc is current, so the role reports
"changed" only when something was compiled.

Usage: compile_package.py PACKAGE_DIR [--check]
"""

import importlib.util
import os
import py_compile
import struct
import sys


def pyc_is_current(source, pyc):
    """True when pyc is a timestamp-based .pyc of this interpreter for source."""
    try:
        with open(pyc, "rb") as f:
            header = f.read(16)
        st = os.stat(source)
    except OSError:
        return False
    if header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if sys.version_info >= (3, 7):       # PEP 552: a flags word before mtime and size
        if len(header) < 16:
            return False
        flags, mtime, size = struct.unpack("<III", header[4:16])
    else:
        if len(header) < 12:
            return False
        flags = 0
        mtime, size = struct.unpack("<II", header[4:12])
    return flags == 0 and mtime == (int(st.st_mtime) & 0xFFFFFFFF) and size == (st.st_size & 0xFFFFFFFF)


def main(argv):
    if not argv or len(argv) > 2 or (len(argv) == 2 and argv[1] != "--check"):
        sys.stderr.write(__doc__)
        return 2
    package, check = argv[0], len(argv) == 2
    if not os.path.isdir(package):
        sys.stderr.write("compile_package.py: %s is not a directory\n" % package)
        return 2
    status = 0
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        source = os.path.join(package, name)
        pyc = importlib.util.cache_from_source(source)
        if pyc_is_current(source, pyc):
            continue
        sys.stdout.write("%s %s\n" % ("would compile" if check else "compiled", source))
        if check:
            continue
        try:
            kwargs = {}
            if hasattr(py_compile, "PycInvalidationMode"):
                # Timestamp-based even when SOURCE_DATE_EPOCH is set: a hash-based
                # .pyc would make every login read and hash the source.
                kwargs["invalidation_mode"] = py_compile.PycInvalidationMode.TIMESTAMP  # novermin
            py_compile.compile(source, cfile=pyc, doraise=True, **kwargs)
            os.chmod(pyc, 0o644)
        except (py_compile.PyCompileError, OSError) as exc:
            sys.stderr.write("compile_package.py: %s: %s\n" % (source, exc))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
