# SPDX-License-Identifier: GPL-3.0-or-later
"""Summarise `mutmut results --all true` (make mutation): the score per
module and overall, and the surviving mutants. Not a test module."""

import collections
import re
import sys

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
IGNORED = {"skipped", "not checked"}      # not checked: the run was stopped before them


def main(path):
    by_module = collections.defaultdict(collections.Counter)
    survivors = []
    with open(path) as handle:
        for line in handle:
            match = re.match(r"\s*([\w.ǁ]+__mutmut_\d+):\s*(.+?)\s*$", line)
            if not match:
                continue
            name, status = match.groups()
            module = name.split(".x")[0].split(".xǁ")[0]
            by_module[module][status] += 1
            if status not in KILLED and status not in IGNORED:
                survivors.append("%s: %s" % (name, status))
    total = killed = 0
    for module in sorted(by_module):
        counts = by_module[module]
        k = sum(counts[s] for s in KILLED)
        n = sum(v for s, v in counts.items() if s not in IGNORED)
        total += n
        killed += k
        print("%-28s %4d/%4d killed (%5.1f %%)  %s"
              % (module, k, n, 100.0 * k / max(n, 1), dict(counts)))
    unchecked = sum(c["not checked"] for c in by_module.values())
    pending = " (%d mutants not checked yet)" % unchecked if unchecked else ""
    print("mutation score: %d/%d = %.1f %%%s" % (killed, total, 100.0 * killed / max(total, 1), pending))
    print("surviving mutants (%d):" % len(survivors))
    for line in survivors:
        print("  " + line)
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
