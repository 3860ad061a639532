# SPDX-License-Identifier: GPL-3.0-or-later
"""Add, or check, the SPDX licence line of every source file.

    python3 scripts/spdx.py          add the line where it is missing (idempotent)
    python3 scripts/spdx.py --check  list the files without it; exit 1 if any
    python3 scripts/spdx.py [--check] PATH..  only these files / directories
    python3 scripts/spdx.py --self-test  check this script on scratch files

The files are the git-tracked and untracked-not-ignored files of the
repository, minus those listed in SKIP below (data whose bytes matter, files a
tool regenerates, licence texts).  The line is

    <comment> SPDX-License-Identifier: GPL-3.0-or-later

in the file's own comment syntax, placed where the file allows it:

  * after a shebang (``#!``) and a Python coding line, which must stay first;
  * in a YAML file, after the ``---`` document start;
  * after an existing "GNU General Public License" line in the leading
    comment block (the header style of this collection), else as the first
    comment line;
  * Jinja2 templates get a Jinja comment ``{# ... #}``, which renders to
    nothing (Ansible's template module trims the newline after it);
  * C files get ``/* ... */``.

A file that already has an SPDX-License-Identifier line in its first 15 lines
is left alone; one with a different identifier is reported (and fails
--check), never rewritten.
"""

import argparse
import fnmatch
import os
import subprocess
import sys
import tempfile

LICENSE = "GPL-3.0-or-later"
TAG = "SPDX-License-Identifier:"
HEAD_LINES = 15

# Comment style by file name, then by extension.
BY_NAME = {
    "Makefile": "hash",
    "Containerfile": "hash",
    "Dockerfile": "hash",
    ".gitignore": "hash",
    ".ansible-lint": "yaml",
    ".yamllint": "yaml",
}
BY_EXT = {
    ".py": "hash",
    ".sh": "hash",
    ".bash": "hash",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".cfg": "hash",
    ".ini": "hash",
    ".toml": "hash",
    ".j2": "jinja",
    ".c": "c",
    ".h": "c",
}

# Not source files, or files whose bytes must not change.
SKIP = [
    "COPYING",
    "LICENSES/*",
    "NOTICE",
    # generated or rewritten by antsibull-changelog; fragments are deleted on release
    "changelogs/changelog.yaml",
    "changelogs/.plugin-cache.yaml",
    "changelogs/fragments/*",
    # ansible-test ignore files take no comments
    "tests/sanity/ignore-*.txt",
    # real-world trees and configuration data used as test input
    "tests/fixtures/*",
    "tests/corpus/trees/*",
    "lab/chroot/templates/pam.d/*",
]


def repo_files(root):
    out = subprocess.run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, stdout=subprocess.PIPE).stdout.decode()
    return sorted(p for p in set(out.split("\0")) if p and os.path.isfile(os.path.join(root, p))
                  and not os.path.islink(os.path.join(root, p)))


def skipped(path):
    return any(fnmatch.fnmatch(path, pat) for pat in SKIP)


def style_of(path, first_line):
    name = os.path.basename(path)
    if name in BY_NAME and BY_NAME[name]:
        return BY_NAME[name]
    ext = os.path.splitext(name)[1]
    if ext in BY_EXT:
        return BY_EXT[ext]
    if first_line.startswith(b"#!"):
        return "hash"
    return None


def spdx_line(style):
    text = "%s %s" % (TAG, LICENSE)
    return {
        "hash": "# " + text,
        "yaml": "# " + text,
        "jinja": "{# " + text + " #}",
        "c": "/* " + text + " */",
    }[style] + "\n"


def existing(lines):
    """The identifier already present in the head of the file, or None."""
    for line in lines[:HEAD_LINES]:
        text = line.decode("utf-8", "replace")
        if TAG in text:
            rest = text.split(TAG, 1)[1]
            for end in ("*/", "#}"):
                rest = rest.split(end, 1)[0]
            return rest.strip()
    return None


def insert_at(lines, style):
    """Index of the line before which the SPDX line goes."""
    i = 0
    if lines and lines[0].startswith(b"#!"):
        i = 1
    # PEP 263 coding line (first or second line)
    if style == "hash" and i < len(lines) and i <= 1 and b"coding" in lines[i] \
            and lines[i].lstrip().startswith(b"#"):
        i += 1
    if style == "yaml" and i < len(lines) and lines[i].rstrip() == b"---":
        i += 1
    # after the licence line of a leading comment block
    lead = b"#" if style in ("hash", "yaml") else None
    j = i
    while lead and j < len(lines) and lines[j].startswith(lead) and not lines[j].startswith(b"#!"):
        if b"General Public License" in lines[j]:
            return j + 1
        j += 1
    return i


def fix_bytes(data, style):
    lines = data.splitlines(True)
    if existing(lines) is not None:
        return data
    at = insert_at(lines, style)
    if at > 0 and at == len(lines) and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    lines.insert(at, spdx_line(style).encode())
    return b"".join(lines)


def examine(root, paths):
    """Yield (path, style, status) with status in ok | missing | other:<id> | unknown."""
    for path in paths:
        if skipped(path):
            continue
        full = os.path.join(root, path)
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            continue  # binary
        lines = data.splitlines(True)
        style = style_of(path, lines[0] if lines else b"")
        if style is None:
            continue
        have = existing(lines)
        if have is None:
            yield path, style, "missing"
        elif have != LICENSE:
            yield path, style, "other:" + have
        else:
            yield path, style, "ok"


def select(root, args):
    files = repo_files(root)
    if not args:
        return files
    wanted = []
    for a in args:
        rel = os.path.relpath(os.path.abspath(a), root)
        wanted += [f for f in files if f == rel or f.startswith(rel.rstrip("/") + "/")]
    return sorted(set(wanted))


def run(root, args, check):
    bad = 0
    counts = {"ok": 0, "missing": 0, "fixed": 0}
    for path, style, status in examine(root, select(root, args)):
        if status == "ok":
            counts["ok"] += 1
        elif status.startswith("other:"):
            print("%s: licence identifier is %r, not %s (left alone)" % (path, status[6:], LICENSE))
            bad += 1
        elif check:
            print("%s: no SPDX-License-Identifier line" % path)
            counts["missing"] += 1
            bad += 1
        else:
            full = os.path.join(root, path)
            with open(full, "rb") as f:
                data = f.read()
            new = fix_bytes(data, style)
            st = os.stat(full)
            with open(full, "wb") as f:
                f.write(new)
            os.chmod(full, st.st_mode)
            print("%s: added" % path)
            counts["fixed"] += 1
    print("spdx: %d file(s) with the line, %d added, %d without, %d problem(s)"
          % (counts["ok"], counts["fixed"], counts["missing"], bad))
    return 1 if bad else 0


def self_test():
    """Scratch repository with one file per style; fix twice; compare."""
    cases = {
        "a.py": (b"#!/usr/bin/python\n# -*- coding: utf-8 -*-\n# Copyright (c) x\n"
                 b"# GNU General Public License v3.0+ (see COPYING)\n\"\"\"Doc.\"\"\"\n",
                 b"#!/usr/bin/python\n# -*- coding: utf-8 -*-\n# Copyright (c) x\n"
                 b"# GNU General Public License v3.0+ (see COPYING)\n"
                 b"# SPDX-License-Identifier: GPL-3.0-or-later\n\"\"\"Doc.\"\"\"\n"),
        "b.py": (b"\"\"\"No header.\"\"\"\nimport os\n",
                 b"# SPDX-License-Identifier: GPL-3.0-or-later\n\"\"\"No header.\"\"\"\nimport os\n"),
        "c.yml": (b"---\n# A comment\n- name: x\n",
                  b"---\n# SPDX-License-Identifier: GPL-3.0-or-later\n# A comment\n- name: x\n"),
        "d.sh": (b"#!/usr/bin/env bash\nset -e\n",
                 b"#!/usr/bin/env bash\n# SPDX-License-Identifier: GPL-3.0-or-later\nset -e\n"),
        "e.j2": (b"line {{ x }}\n",
                 b"{# SPDX-License-Identifier: GPL-3.0-or-later #}\nline {{ x }}\n"),
        "f.c": (b"#include <stdio.h>\n",
                b"/* SPDX-License-Identifier: GPL-3.0-or-later */\n#include <stdio.h>\n"),
        "g.py": (b"# SPDX-License-Identifier: GPL-3.0-or-later\nx = 1\n",
                 b"# SPDX-License-Identifier: GPL-3.0-or-later\nx = 1\n"),
        "h.yml": (b"", b"# SPDX-License-Identifier: GPL-3.0-or-later\n"),
        "run": (b"#!/bin/sh\necho\n", b"#!/bin/sh\n# SPDX-License-Identifier: GPL-3.0-or-later\necho\n"),
        "Makefile": (b"all:\n\ttrue\n", b"# SPDX-License-Identifier: GPL-3.0-or-later\nall:\n\ttrue\n"),
        "data.txt": (b"not source\n", b"not source\n"),
        "tests/fixtures/pamd/x.yml": (b"---\nkeep: bytes\n", b"---\nkeep: bytes\n"),
    }
    failures = []
    with tempfile.TemporaryDirectory() as root:
        subprocess.run(["git", "init", "-q", root], check=True)
        for name, (before, _after) in cases.items():
            full = os.path.join(root, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(before)
        os.chmod(os.path.join(root, "d.sh"), 0o755)
        with open(os.devnull, "w") as null:
            saved, sys.stdout = sys.stdout, null
            try:
                rc_check_before = run(root, [], check=True)
                rc_fix = run(root, [], check=False)
                rc_check_after = run(root, [], check=True)
                rc_fix2 = run(root, [], check=False)
            finally:
                sys.stdout = saved
        for name, (_before, after) in cases.items():
            with open(os.path.join(root, name), "rb") as f:
                got = f.read()
            if got != after:
                failures.append("%s: got %r, want %r" % (name, got, after))
        if not os.access(os.path.join(root, "d.sh"), os.X_OK):
            failures.append("d.sh lost its executable bit")
        if rc_check_before != 1:
            failures.append("--check passed on files without the line")
        if (rc_fix, rc_check_after, rc_fix2) != (0, 0, 0):
            failures.append("fix/check/fix returned %r" % ((rc_fix, rc_check_after, rc_fix2),))
        # a different identifier is reported, never rewritten
        other = os.path.join(root, "o.py")
        with open(other, "wb") as f:
            f.write(b"# SPDX-License-Identifier: MIT\n")
        with open(os.devnull, "w") as null:
            saved, sys.stdout = sys.stdout, null
            try:
                rc_other = run(root, [other], check=False)
            finally:
                sys.stdout = saved
        with open(other, "rb") as f:
            if f.read() != b"# SPDX-License-Identifier: MIT\n" or rc_other != 1:
                failures.append("a file with another identifier was changed or not reported")
    for f in failures:
        print("spdx self-test FAIL: " + f)
    print("spdx self-test: %d case(s), %d failure(s)" % (len(cases) + 1, len(failures)))
    return 1 if failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--check", action="store_true", help="report, change nothing")
    ap.add_argument("--self-test", action="store_true", help="test this script on scratch files")
    ap.add_argument("paths", nargs="*")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return run(root, a.paths, a.check)


if __name__ == "__main__":
    sys.exit(main())
