# SPDX-License-Identifier: GPL-3.0-or-later
"""One sample of a benchmark child: a fresh /usr/bin/python3 (isolated, no
bytecode writing: as pam_python runs it) that runs CHILD with the given
names bound at its top, and prints its result as a JSON line last."""

from __future__ import annotations

import json
import subprocess


def run_fresh(child, **names):
    """Run CHILD (Python source) in a fresh interpreter, NAMES assigned
    before it; return the JSON of its last output line."""
    code = "".join("%s = %r\n" % (name, value) for name, value in names.items()) + child
    p = subprocess.run(["/usr/bin/python3", "-I", "-B", "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, check=False)
    if p.returncode != 0:
        raise RuntimeError("sample failed: %s" % p.stderr.decode(errors="replace")[-2000:])
    return json.loads(p.stdout.decode().strip().splitlines()[-1])
