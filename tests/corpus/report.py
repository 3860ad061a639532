# SPDX-License-Identifier: GPL-3.0-or-later
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
        items = (result.get('violations') or []) + (result.get('path_changes') or []) + \
            (result.get('structure') or [])
        services = sorted(set(i.split(' ', 1)[0] for i in items if ' account ' in i or ' auth ' in i
                              or ' open_session ' in i))
        still = any('still PAM_SUCCESS' in i for i in items)
        what = []
        if services:
            what.append('answers or paths change in %s' % ', '.join(services))
        if still:
            what.append('sshd still admits users without a job')
        if result.get('structure'):
            what.append('; '.join(result['structure']))
        return 'wrong: %s (%d findings)' % ('; '.join(what) or '?', len(items))
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
