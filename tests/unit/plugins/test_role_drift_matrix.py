# SPDX-License-Identifier: GPL-3.0-or-later
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
(molecule and the fleet lab run it on real systemd).

The interface service (docs/service.md) is a third value of the interface
factor: two more rows, complementary in every other factor, so that each
value of each factor meets it once.  Its node state is what role
adopt_module leaves (that role's own test checks it does): the client
really built with build.sh into the tree's PAM module directory, its build
record, slurm-adopt.socket enabled with `systemctl --root` on the tree, and
a real service listening on the configured socket (without systemd it
listens itself, 0600)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REPO, _COLL_ROOT, make_root

# the fixture runs ansible-playbook over every combination (minutes on a busy machine)
pytestmark = pytest.mark.timeout(2400)

MODULE_FILES = os.path.join(REPO, 'roles', 'adopt_module', 'files')
CLIENT = 'pam_slurm_adopt_client.so'

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
# the interface service (index 2 of a third interface value) in two rows that
# differ in every other factor
SERVICE = 2
SERVICE_ROWS = [(0, 0, 0, SERVICE, 0), (1, 1, 1, SERVICE, 1)]
VALUES = dict(FACTORS, interface=('pam_python', 'pam_exec', 'service'))


def combos(base, sockets):
    out = []
    for row in L8 + SERVICE_ROWS:
        combo = {name: VALUES[name][i] for (name, _values), i in zip(FACTORS, row)}
        combo['name'] = '-'.join(str(combo[name]) for name, _v in FACTORS)
        combo['root'] = make_root(base / combo['name'], combo['tree'])
        combo['module_dir'] = str(base / combo['name'] / 'module')
        combo['socket'] = os.path.join(sockets, '%d.sock' % len(out))
        os.makedirs(combo['module_dir'])
        with open(os.path.join(combo['module_dir'], 'pam_slurm_adopt.py'), 'w') as handle:
            handle.write('# the module (only its presence is checked here)\n')
        if combo['interface'] == 'service':
            service_node(combo)
        out.append(combo)
    return out


def rebuild(combo, client, cflags):
    """Build the client with build.sh (CFLAGS as given) and record its checksum, as the role does."""
    env = dict(os.environ)
    env.pop('CFLAGS', None)
    if cflags:
        env['CFLAGS'] = cflags
    subprocess.run(['sh', os.path.join(MODULE_FILES, 'client', 'build.sh'), client, combo['socket'],
                    '/usr/bin/python3', os.path.join(MODULE_FILES, 'slurm_adopt_service.py')], check=True, env=env)
    with open(client, 'rb') as handle:
        output = hashlib.sha256(handle.read()).hexdigest()
    with open(os.path.join(combo['module_dir'], 'client.build-id'), 'w') as handle:
        json.dump({'output': output, 'path': '/lib/x86_64-linux-gnu/security/' + CLIENT}, handle)


def service_node(combo):
    """What role adopt_module leaves for the interface service, in the tree:
    the client built for real, its record, the socket unit enabled offline."""
    client = os.path.join(combo['root'], 'lib', 'x86_64-linux-gnu', 'security', CLIENT)
    rebuild(combo, client, None)
    units = os.path.join(combo['root'], 'etc', 'systemd', 'system')
    os.makedirs(units)
    with open(os.path.join(REPO, 'roles', 'adopt_module', 'templates', 'slurm-adopt.socket.j2')) as handle:
        text = handle.read().replace('{{ adopt_module_service_socket }}', combo['socket'])
    with open(os.path.join(units, 'slurm-adopt.socket'), 'w') as handle:
        handle.write(text.replace('{{ ansible_managed }}', 'test'))
    subprocess.run(['systemctl', '--root', combo['root'], 'enable', 'slurm-adopt.socket'], check=True,
                   capture_output=True)


@pytest.fixture(scope='module')
def sockets():
    """A short directory for the services' sockets (sun_path has 108 bytes),
    and the services listening there (stopped at the end)."""
    directory = tempfile.mkdtemp(prefix='saf-m-')
    procs = []
    yield directory, procs
    for proc in procs:
        proc.terminate()
        proc.wait(30)
    shutil.rmtree(directory, ignore_errors=True)


def serve(socket_path, procs):
    proc = subprocess.Popen(['env', '-i', 'PATH=/usr/bin:/bin', '/usr/bin/python3', '-I', '-S',
                             os.path.join(MODULE_FILES, 'slurm_adopt_service.py'), 'serve', '--socket', socket_path,
                             '--idle-exit', '0'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    end = time.monotonic() + 30
    while not os.path.exists(socket_path):
        assert proc.poll() is None and time.monotonic() < end, 'the service did not listen on %s' % socket_path
        time.sleep(0.05)
    return proc


@pytest.fixture(scope='module')
def matrix(tmp_path_factory, sockets):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not next to %s: use the venv of scripts/venv.sh' % sys.executable)
    for tool in ('gcc', 'systemctl'):
        if shutil.which(tool) is None:
            pytest.fail('%s is missing: the service rows build the client and enable its socket unit' % tool)
    todo = combos(tmp_path_factory.mktemp('matrix'), sockets[0])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    extra = {'test_combos': todo, 'ansible_python_interpreter': sys.executable}
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)],
                          env=env, capture_output=True, text=True, check=False, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    for combo in todo:
        if combo['interface'] == 'service':
            serve(combo['socket'], sockets[1])
    return todo


def run_check(combo, *only):
    args = [sys.executable, os.path.join(combo['root'], 'check', 'slurm_adopt_check.py'), 'check',
            '--config', os.path.join(combo['root'], 'check', 'check.json')]
    for name in only:
        args += ['--only', name]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize('index', range(len(L8) + len(SERVICE_ROWS)))
def test_combination_passes_its_own_drift_check(matrix, index):
    combo = matrix[index]
    with open(os.path.join(combo['root'], 'check', 'check.json')) as handle:
        config = json.load(handle)
    assert config['logind'] == ('masked' if combo['logind_mask'] else 'any')
    assert config['module_path'] == combo['module_dir'] + '/pam_slurm_adopt.py'
    for name in ('pam_stack', 'pam_eval', 'pam_guard', 'pam_health'):
        assert os.path.isfile(os.path.join(combo['root'], 'check', 'slurm_adopt_%s.py' % name)), name
    only = ['account_stack', 'admin_access', 'bypass', 'pam_systemd', 'interface', 'service'] + \
        ([] if combo['logind_mask'] else ['logind'])
    res = run_check(combo, *only)
    assert res.returncode == 0, '%s\n%s%s' % (combo['name'], res.stdout, res.stderr)
    with open(os.path.join(combo['root'], 'etc', 'pam.d', 'sshd')) as handle:
        sshd = handle.read()
    # the combination really is what it says (the check saw what the role wrote)
    if combo['tree'] == 'rocky9':
        assert 'password-auth' in sshd
    rules = res.stdout
    assert {'pam_exec': 'pam_exec', 'pam_python': 'pam_python', 'service': CLIENT}[combo['interface']] in rules, rules
    if combo['interface'] == 'service':
        assert 'checksum matches the build record' in rules and 'slurm-adopt.socket enabled, ' in rules, rules
        control = 'sufficient' if combo['admin_access'] == 'pam_access' else 'required'
        assert 'account %s pam_slurm_adopt_client.so ' % control in sshd
    else:
        assert 'interface is not service' in rules, rules


def _service_combo(matrix):
    return [c for c in matrix if c['interface'] == 'service'][0]


def test_service_drift_is_caught(matrix):
    """Each broken property of the service interface turns its check red:
    a client that is not the one built, one that links more than libc and
    libpam, the socket unit disabled, the socket open to others; each
    repaired, the check is green again."""
    combo = _service_combo(matrix)
    client = os.path.join(combo['root'], 'lib', 'x86_64-linux-gnu', 'security', CLIENT)
    with open(client, 'rb') as handle:
        good = handle.read()
    with open(client, 'ab') as handle:
        handle.write(b'x')
    res = run_check(combo, 'interface')
    assert res.returncode == 2 and 'is not the one built' in res.stdout, res.stdout
    with open(client, 'wb') as handle:
        handle.write(good)
    os.chmod(client, 0o664)
    res = run_check(combo, 'interface')
    assert res.returncode == 2 and 'not a root-owned regular file without group/world write' in res.stdout
    os.chmod(client, 0o644)
    assert run_check(combo, 'interface').returncode == 0
    res = run_check(combo, 'interface')
    assert 'links only libc.so.6, libpam.so.0' in res.stdout, res.stdout

    # a client built (and recorded) that links a library besides libc and
    # libpam, or carries a library search path: red, although its checksum
    # is the recorded one
    for cflags, why in (('-O2 -Wl,--no-as-needed -lm', 'it links libm.so.6, '),
                        ('-O2 -Wl,-rpath,/tmp', 'RUNPATH /tmp')):
        rebuild(combo, client, cflags)
        res = run_check(combo, 'interface')
        assert res.returncode == 2 and 'must link libc and libpam only' in res.stdout and why in res.stdout, res.stdout
    rebuild(combo, client, None)
    assert run_check(combo, 'interface').returncode == 0

    subprocess.run(['systemctl', '--root', combo['root'], 'disable', 'slurm-adopt.socket'], check=True,
                   capture_output=True)
    res = run_check(combo, 'service')
    assert res.returncode == 2 and 'slurm-adopt.socket is disabled, expected enabled' in res.stdout, res.stdout
    subprocess.run(['systemctl', '--root', combo['root'], 'enable', 'slurm-adopt.socket'], check=True,
                   capture_output=True)
    os.chmod(combo['socket'], 0o666)
    res = run_check(combo, 'service')
    assert res.returncode == 2 and 'must be a socket root:root 0600' in res.stdout, res.stdout
    os.chmod(combo['socket'], 0o600)
    assert run_check(combo, 'service').returncode == 0


def test_service_socket_missing_without_systemd_is_a_warning_not_green(matrix, sockets):
    """This machine's PID 1 is not systemd: a missing socket cannot be
    blamed on the unit, so it is a warning (never drains), not a pass."""
    combo = _service_combo(matrix)
    proc = [p for p in sockets[1] if combo['socket'] in p.args][0]
    proc.terminate()
    proc.wait(30)
    res = run_check(combo, 'service')
    assert res.returncode == 1 and 'fallback child' in res.stdout, res.stdout
    serve(combo['socket'], sockets[1])
    assert run_check(combo, 'service').returncode == 0


def test_the_matrix_covers_every_pair():
    for a in range(len(FACTORS)):
        for b in range(a + 1, len(FACTORS)):
            pairs = {(row[a], row[b]) for row in L8}
            assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}, (FACTORS[a][0], FACTORS[b][0])
