# SPDX-License-Identifier: GPL-3.0-or-later
"""The mutants to run again after a change (make mutation-recheck). Not a
test module.

    mutation_recheck.py BASE_DIR NEW_DIR [EQUIVALENT_LIST]

BASE_DIR is an earlier `make mutation` directory (its src/ and its
results.txt), NEW_DIR the fresh copy of the current code. Printed, one a
line: a glob for every function whose code differs from BASE_DIR's (or is
new), so that all of its mutants run again; and the name of every mutant of
an unchanged function that BASE_DIR's run did not kill. A mutant of an
unchanged function that was killed stays killed: the tests only grow, and
mutmut runs a mutant against the tests that call its function. A survivor
of an unchanged function that EQUIVALENT_LIST names (mutation_equivalent.txt)
is not run again either: it keeps its status, and mutation_score.py checks
the listed line against `mutmut show` as for any run.
mutation_score.py --base BASE_DIR merges the two runs and refuses a mutant
whose function changed but was not run again."""

import ast
import os
import re
import sys

NAME = re.compile(r"^(?P<module>[\w.]+?)\.(?P<func>xǁ.+?|x_.+?)__mutmut_\d+$")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def function_sources(path):
    """{mutmut's function key: source text} of a module: x_<function>,
    xǁ<class>ǁ<method> (nested functions belong to their outer one)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out["x_" + node.name] = ast.get_source_segment(text, node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out["xǁ%sǁ%s" % (node.name, item.name)] = ast.get_source_segment(text, item)
    return out


def module_sources(directory, module):
    path = os.path.join(directory, "src", *module.split(".")) + ".py"
    return function_sources(path) if os.path.exists(path) else {}


def read_results(path):
    out = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"\s*([\w.ǁ]+__mutmut_\d+):\s*(.+?)\s*$", line)
            if match:
                out[match.group(1)] = match.group(2)
    return out


def changed_functions(base_dir, new_dir, modules):
    """{(module, function key)} whose source differs or is new."""
    changed = set()
    for module in modules:
        old, new = module_sources(base_dir, module), module_sources(new_dir, module)
        changed.update((module, f) for f, src in new.items() if old.get(f) != src)
    return changed


def main(argv):
    base_dir, new_dir = argv[:2]
    skip = set()
    if len(argv) > 2:
        import mutation_score
        skip = set(mutation_score.read_equivalent(argv[2]))
    base = read_results(os.path.join(base_dir, "results.txt"))
    modules = sorted({NAME.match(n).group("module") for n in base})
    changed = changed_functions(base_dir, new_dir, modules)
    wanted = ["%s.%s__mutmut_*" % key for key in sorted(changed)]
    for name, status in sorted(base.items()):
        match = NAME.match(name)
        if ((match.group("module"), match.group("func")) in changed or status in KILLED
                or name in skip):
            continue
        wanted.append(name)
    for line in wanted:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
