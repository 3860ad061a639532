"""Every supported combination of role variables passes its own drift check
(issue: a site that follows the docs must not get every node rolled back by
site.yml and drained by HealthCheckProgram).

The combinations cover every pair of values of: the node's PAM layout (Debian,
RHEL with `pam_usertype issystem` / `pam_succeed_if uid < 1000`), the admin
access mode (pam_access, pam_listfile), `-account` (adopt_pam_dash), the
interface (pam_python, pam_exec) and adopt_logind_mask (an orthogonal array
L8: 8 runs instead of 32).  adopt_pam writes each stack below a temporary
root; adopt_drift installs the check configured from the same variables; the
installed check (with the collection's PAM parser next to it) runs against
that tree.  The logind check needs systemd, which this machine's PID 1 is
not: for adopt_logind_mask: true only the derived setting is compared here
(molecule and the fleet lab run it on real systemd)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, _COLL_ROOT, make_root

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'drift_matrix.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

# columns 1-5 of the L8 orthogonal array: every pair of values of any two
# factors appears in at least one row
L8 = [(0, 0, 0, 0, 0), (0, 0, 0, 1, 1), (0, 1, 1, 0, 0), (0, 1, 1, 1, 1),
      (1, 0, 1, 0, 1), (1, 0, 1, 1, 0), (1, 1, 0, 0, 1), (1, 1, 0, 1, 0)]
FACTORS = (('tree', ('debian12', 'rocky9')),
           ('admin_access', ('pam_access', 'pam_listfile')),
           ('dash', (False, True)),
           ('interface', ('pam_python', 'pam_exec')),
           ('logind_mask', (True, False)))


def combos(base):
    out = []
    for row in L8:
        combo = {name: values[i] for (name, values), i in zip(FACTORS, row)}
        combo['name'] = '-'.join(str(combo[name]) for name, _v in FACTORS)
        combo['root'] = make_root(base / combo['name'], combo['tree'])
        combo['module_dir'] = str(base / combo['name'] / 'module')
        os.makedirs(combo['module_dir'])
        with open(os.path.join(combo['module_dir'], 'pam_slurm_adopt.py'), 'w') as handle:
            handle.write('# the module (only its presence is checked here)\n')
        out.append(combo)
    return out


@pytest.fixture(scope='module')
def matrix(tmp_path_factory):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not next to %s: use the venv of scripts/venv.sh' % sys.executable)
    todo = combos(tmp_path_factory.mktemp('matrix'))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    extra = {'test_combos': todo, 'ansible_python_interpreter': sys.executable}
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)],
                          env=env, capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return todo


def run_check(combo, *only):
    args = [sys.executable, os.path.join(combo['root'], 'check', 'slurm_adopt_check.py'), 'check',
            '--config', os.path.join(combo['root'], 'check', 'check.json')]
    for name in only:
        args += ['--only', name]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize('index', range(len(L8)))
def test_combination_passes_its_own_drift_check(matrix, index):
    combo = matrix[index]
    with open(os.path.join(combo['root'], 'check', 'check.json')) as handle:
        config = json.load(handle)
    assert config['logind'] == ('masked' if combo['logind_mask'] else 'any')
    assert config['module_path'] == combo['module_dir'] + '/pam_slurm_adopt.py'
    for name in ('pam_stack', 'pam_eval', 'pam_guard', 'pam_health'):
        assert os.path.isfile(os.path.join(combo['root'], 'check', 'slurm_adopt_%s.py' % name)), name
    only = ['account_stack', 'admin_access', 'bypass', 'pam_systemd', 'interface'] + ([] if combo['logind_mask'] else ['logind'])
    res = run_check(combo, *only)
    assert res.returncode == 0, '%s\n%s%s' % (combo['name'], res.stdout, res.stderr)
    with open(os.path.join(combo['root'], 'etc', 'pam.d', 'sshd')) as handle:
        sshd = handle.read()
    # the combination really is what it says (the check saw what the role wrote)
    if combo['tree'] == 'rocky9':
        assert 'password-auth' in sshd
    rules = res.stdout
    assert ('pam_exec' if combo['interface'] == 'pam_exec' else 'pam_python') in rules, rules


def test_the_matrix_covers_every_pair():
    for a in range(len(FACTORS)):
        for b in range(a + 1, len(FACTORS)):
            pairs = {(row[a], row[b]) for row in L8}
            assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}, (FACTORS[a][0], FACTORS[b][0])
