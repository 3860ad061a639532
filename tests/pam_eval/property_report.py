# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 8's property on the fixture trees through today's editor, as a report.

    .venv/bin/python tests/pam_eval/property_report.py [TREE ...]   # default: every tests/fixtures/pamd tree

For each tree: the editor's refusal, or the violations of the property
(grouped: service, op, what changed <- class/scenario ...).  Exit status 0;
tests/unit/pam_eval/test_property_fixtures.py asserts on the same data.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pam_eval_harness as H  # noqa: E402

FIXTURES = os.path.join(H.REPO, 'tests', 'fixtures', 'pamd')


def main(names):
    names = names or sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))
    with tempfile.TemporaryDirectory(prefix='pe-report-') as work:
        standin = H.build_standin(work)
        for name in names:
            out = H.editor_property(os.path.join(FIXTURES, name), os.path.join(work, name), standin)
            if out['refused']:
                print('%s: REFUSED: %s' % (name, out['refused']))
                continue
            print('%s: %d violations (%d queries per side)' % (name, len(out['violations']), len(out['before'])))
            for line in H.summarise(out['violations']):
                print('    ' + line)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
