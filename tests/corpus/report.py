#!/usr/bin/env python3
"""Print the corpus table (markdown) from tests/corpus/manifest.yml and the
results of the last corpus run (build/pamcorpus-results.json, written by
tests/corpus/test_corpus.py):

    .venv/bin/python tests/corpus/report.py [RESULTS_JSON]

Columns: tree, family, source, expected, actual, and the first lines of
what the editor did wrong (violations, refusals).  docs/pam-corpus.md holds
a copy of this table with the date of the run.
"""

import json
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = {
    'handwritten': 'hand-written (tests/corpus/trees)',
    'site': 'site change over a tree (tests/corpus/sites + manifest edits)',
}


def source_of(entry, recipes):
    recipe = entry['recipe']
    if recipe == 'handwritten':
        return SOURCES['handwritten']
    if recipe == 'site':
        return 'site, over %s' % entry['base']
    tool = recipes[recipe]['tool'].split(' (')[0].split(',')[0]
    return '%s: `%s`' % (tool, '; '.join(entry['run']))


def actual_of(result):
    if not result:
        return 'not run'
    actual = result.get('actual')
    if actual == 'refused':
        return 'refused: %s' % result.get('message', '').replace('|', '\\|')[:160]
    if actual == 'violations':
        first = (result.get('violations') or []) + (result.get('path_changes') or []) + \
            (result.get('structure') or [])
        total = len(result.get('violations') or []) + len(result.get('path_changes') or []) + \
            len(result.get('structure') or [])
        return 'wrong (%d): %s' % (total, first[0].replace('|', '\\|') if first else '?')
    if actual == 'edited':
        return 'edited; second run / removal failed'
    return actual


def main(argv):
    results_path = argv[1] if len(argv) > 1 else os.path.join(REPO, 'build', 'pamcorpus-results.json')
    with open(os.path.join(REPO, 'tests', 'corpus', 'manifest.yml')) as handle:
        manifest = yaml.safe_load(handle)
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as handle:
            results = json.load(handle)
    print('| tree | family | source | expected | actual (today) |')
    print('|---|---|---|---|---|')
    for entry in manifest['trees']:
        expected = entry['expect'] + (' (`%s`)' % entry['refusal'] if entry['expect'] == 'refused' else '')
        print('| %s | %s | %s | %s | %s |' % (entry['name'], entry['family'],
                                              source_of(entry, manifest['recipes']), expected,
                                              actual_of(results.get(entry['name']))))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
