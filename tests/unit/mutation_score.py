# SPDX-License-Identifier: GPL-3.0-or-later
"""Summarise `mutmut results --all true` (make mutation): the score per
module and overall, and the surviving mutants. Not a test module.

    mutation_score.py RESULTS [--base BASE_DIR] [--equivalent LIST]

--base (make mutation-recheck): RESULTS is a run of only some mutants (those
that mutation_recheck.py lists); a mutant it did not check takes its status
from BASE_DIR's run, but only if its function's code is the same in both
(else it stays "not checked").

LIST (tests/unit/mutation_equivalent.txt) names reviewed equivalent mutants:
mutants that survive because no test can tell them from the original. Each
entry is two lines:

    <mutant name>: <the mutated line, as `mutmut show` prints it after "+">
        <why no test can tell it from the original (one line)>

A listed survivor counts as equivalent (out of the score) only while
`mutmut show` (run in the current directory, the mutmut run's) still shows
that very line: a code change that renumbers or changes the mutants turns the
entry stale, and the mutant counts as a survivor again until the list is
reviewed. A listed mutant that is killed is reported, since it is not
equivalent. Both scores are printed: all mutants, and without the equivalent
ones."""

import collections
import re
import subprocess
import sys

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
IGNORED = {"skipped", "not checked"}      # not checked: the run was stopped before them


def read_results(path):
    """[(mutant name, status)] of a `mutmut results --all true` output."""
    out = []
    with open(path) as handle:
        for line in handle:
            match = re.match(r"\s*([\w.ǁ]+__mutmut_\d+):\s*(.+?)\s*$", line)
            if match:
                out.append(match.groups())
    return out


def read_equivalent(path):
    """{mutant name: (mutated line, reason)}; raises ValueError on a malformed list."""
    entries = {}
    name = None
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                match = re.match(r"([\w.ǁ]+__mutmut_\d+):\s*(\S.*?)\s*$", line)
                if not match or match.group(1) in entries:
                    raise ValueError("%s:%d: expected '<new mutant name>: <mutated line>'"
                                     % (path, number))
                name = match.group(1)
                entries[name] = (match.group(2), None)
            elif name is None or entries[name][1] is not None:
                raise ValueError("%s:%d: a reason must follow its mutant, one line" % (path, number))
            else:
                entries[name] = (entries[name][0], line.strip())
    missing = [n for n, (_line, reason) in entries.items() if not reason]
    if missing:
        raise ValueError("%s: no reason given for %s" % (path, ", ".join(missing)))
    return entries


def mutated_lines(name):
    """The "+" lines of `mutmut show name`, stripped (None if mutmut cannot show it)."""
    proc = subprocess.run([sys.executable, "-m", "mutmut", "show", name],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode:
        return None
    return [line[1:].strip() for line in proc.stdout.splitlines()
            if line.startswith("+") and not line.startswith("+++")]


def merge_base(results, base_dir):
    """results with each unchecked mutant of an unchanged function taken
    from base_dir's run; also the number taken that way."""
    import os
    import mutation_recheck
    base = dict(read_results(os.path.join(base_dir, "results.txt")))
    modules = sorted({mutation_recheck.NAME.match(n).group("module") for n, _s in results})
    changed = mutation_recheck.changed_functions(base_dir, ".", modules)
    merged, taken = [], 0
    for name, status in results:
        match = mutation_recheck.NAME.match(name)
        if (status == "not checked" and name in base
                and (match.group("module"), match.group("func")) not in changed):
            status = base[name]
            taken += 1
        merged.append((name, status))
    return merged, taken


def main(argv):
    if not argv or len(argv) % 2 != 1:
        print(__doc__)
        return 2
    results = read_results(argv[0])
    options = dict(zip(argv[1::2], argv[2::2]))
    if set(options) - {"--base", "--equivalent"}:
        print(__doc__)
        return 2
    equivalent = read_equivalent(options["--equivalent"]) if "--equivalent" in options else {}
    if "--base" in options:
        results, taken = merge_base(results, options["--base"])
        print("%d mutants of unchanged functions keep their status from %s"
              % (taken, options["--base"]))
    by_module = collections.defaultdict(collections.Counter)
    survivors, counted_out, notes = [], [], []
    seen = set()
    for name, status in results:
        seen.add(name)
        module = name.split(".x")[0].split(".xǁ")[0]
        if status in KILLED or status in IGNORED:
            by_module[module][status] += 1
            if name in equivalent and status in KILLED:
                notes.append("%s is listed as equivalent but was %s: remove it from the list"
                             % (name, status))
            continue
        if name in equivalent:
            line, reason = equivalent[name]
            shown = mutated_lines(name)
            if shown is not None and line in shown:
                by_module[module]["equivalent"] += 1
                counted_out.append("%s: %s  (%s)" % (name, line, reason))
                continue
            notes.append("%s: stale entry (the list says '%s', mutmut shows %s): counted as %s"
                         % (name, line, shown, status))
        by_module[module][status] += 1
        survivors.append("%s: %s" % (name, status))
    notes.extend("%s is listed as equivalent but is not in this run" % n
                 for n in sorted(equivalent) if n not in seen
                 and n.split(".x")[0] in by_module)
    total = killed = all_total = 0
    for module in sorted(by_module):
        counts = by_module[module]
        k = sum(counts[s] for s in KILLED)
        n = sum(v for s, v in counts.items() if s not in IGNORED and s != "equivalent")
        total += n
        killed += k
        all_total += n + counts["equivalent"]
        print("%-28s %4d/%4d killed (%5.1f %%), %4d/%4d with the equivalent ones  %s"
              % (module, k, n, 100.0 * k / max(n, 1), k, n + counts["equivalent"],
                 dict(counts)))
    unchecked = sum(c["not checked"] for c in by_module.values())
    pending = " (%d mutants not checked yet)" % unchecked if unchecked else ""
    print("mutation score: %d/%d = %.1f %% (equivalent mutants counted out: %d; "
          "all mutants: %d/%d = %.1f %%)%s"
          % (killed, total, 100.0 * killed / max(total, 1), len(counted_out),
             killed, all_total, 100.0 * killed / max(all_total, 1), pending))
    print("surviving mutants (%d):" % len(survivors))
    for line in survivors:
        print("  " + line)
    if counted_out:
        print("equivalent mutants, counted out (%d, reviewed in the list):" % len(counted_out))
        for line in counted_out:
            print("  " + line)
    for line in notes:
        print("NOTE: " + line)
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
