# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/explain.yml, the helpdesk view, run for real with ansible-playbook.

Without the lab: two "nodes" of one inventory (local connections), each
with its own PAM tree below a root-owned temporary directory (not /tmp,
which anyone may write: the module the adopt rule names must be safe to run
as root) and one real slurm.conf with an empty spool directory; the
deployed adopt rule of node n2 sets action_no_jobs=ignore.  The installed
module's real `explain` must answer with each node's deployed options: deny
on n1, no decision on n2; the table and the JSON form say so; --check gives
the same; nothing changes (changed=0).

With the host lab (marked `node`: real Slurm 22.05, real jobs): the lab's
live `py` sshd account stack; the deployed options change the answer
(action_no_jobs=ignore for a user without a job, action_unknown=deny for a
user with two jobs), a user with one job is adopted into it."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO, _COLL_ROOT

PLAYBOOK = os.path.join(REPO, 'playbooks', 'explain.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
MODULE_SRC = os.path.join(REPO, 'roles', 'adopt_module', 'files')
sys.path.insert(0, os.path.join(REPO, 'lab'))


def playbook(inventory, extra, *args, timeout=600):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not next to %s: use the venv of scripts/venv.sh' % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
               ANSIBLE_STDOUT_CALLBACK='default')
    return subprocess.run([ANSIBLE_PLAYBOOK, '-i', inventory, PLAYBOOK, '-e', json.dumps(extra)] + list(args),
                          env=env, capture_output=True, text=True, check=False, timeout=timeout)


def recap(stdout):
    """{host: {ok, changed, unreachable, failed, ...}} of the PLAY RECAP."""
    out = {}
    for host, rest in re.findall(r'^(\S+)\s+: (ok=.*)$', stdout, re.M):
        out[host] = {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', rest)}
    return out


def write_inventory(path, hosts):
    inv = {'all': {'children': {'slurm_compute': {'hosts': hosts}},
                   'vars': {'ansible_connection': 'local', 'ansible_become': False,
                            'ansible_python_interpreter': sys.executable}}}
    with open(path, 'w') as handle:
        json.dump(inv, handle)
    return path


@pytest.fixture
def two_nodes():
    base = tempfile.mkdtemp(prefix='saf-explain-', dir='/run')
    os.chmod(base, 0o755)
    mod = os.path.join(base, 'mod')
    os.makedirs(mod)
    shutil.copy(os.path.join(MODULE_SRC, 'pam_slurm_adopt.py'), mod)
    shutil.copytree(os.path.join(MODULE_SRC, 'slurm_adopt'), os.path.join(mod, 'slurm_adopt'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    spool = os.path.join(base, 'spool')
    os.makedirs(spool)
    conf = os.path.join(base, 'slurm.conf')
    with open(conf, 'w') as handle:
        handle.write('ClusterName=x\nSlurmctldHost=localhost\nSlurmdSpoolDir=%s\nNodeName=%s CPUs=1\n'
                     % (spool, socket.gethostname().split('.')[0]))
    hosts = {}
    for name, options in (('n1', ''), ('n2', ' action_no_jobs=ignore')):
        root = os.path.join(base, name)
        os.makedirs(os.path.join(root, 'etc', 'pam.d'))
        with open(os.path.join(root, 'etc', 'pam.d', 'sshd'), 'w') as handle:
            handle.write('account required pam_unix.so\n'
                         'account required pam_python.so %s/pam_slurm_adopt.py%s\n' % (mod, options))
        hosts[name] = {'adopt_drift_root': root}
    inventory = write_inventory(os.path.join(base, 'inventory.json'), hosts)
    yield {'base': base, 'inventory': inventory, 'slurm_conf': conf}
    shutil.rmtree(base)


def test_explain_uses_each_nodes_deployed_options(two_nodes):
    out = os.path.join(two_nodes['base'], 'explain.json')
    res = playbook(two_nodes['inventory'], {'user': 'nobody', 'explain_json': out,
                                            'slurm_conf': two_nodes['slurm_conf']})
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    with open(out) as handle:
        report = json.load(handle)
    nodes = {n['host']: n for n in report['nodes']}
    assert report['user'] == 'nobody' and report['unreachable'] == []
    assert nodes['n1']['error'] is None and nodes['n2']['error'] is None, nodes
    assert nodes['n1']['decision'] == 'PAM_PERM_DENIED' and nodes['n1']['options'] == []
    assert nodes['n1']['why'].endswith('owns no jobs => deny')
    assert 'no active jobs on this node' in nodes['n1']['user_message']
    assert nodes['n2']['decision'] == 'PAM_IGNORE' and nodes['n2']['options'] == ['action_no_jobs=ignore']
    assert nodes['n2']['why'].endswith('owns no jobs but action_no_jobs=ignore')
    assert nodes['n2']['adopt_rule'].endswith('# /etc/pam.d/sshd:2')
    # the table
    assert re.search(r'n1\s+PAM_PERM_DENIED\s+deny: uid \d+ owns no jobs => deny; the user sees \\".*\\"  \[defaults\]',
                     res.stdout), res.stdout[-3000:]
    assert re.search(r'n2\s+PAM_IGNORE\s+no decision.*action_no_jobs=ignore  \[action_no_jobs=ignore\]', res.stdout)
    assert all(r['changed'] == 0 and r['failed'] == 0 for r in recap(res.stdout).values()), recap(res.stdout)

    # check mode: the same answers, nothing changed
    os.unlink(out)
    res = playbook(two_nodes['inventory'], {'user': 'nobody', 'explain_json': out,
                                            'slurm_conf': two_nodes['slurm_conf']}, '--check')
    assert res.returncode == 0, res.stdout[-6000:]
    with open(out) as handle:
        again = {n['host']: n['decision'] for n in json.load(handle)['nodes']}
    assert again == {'n1': 'PAM_PERM_DENIED', 'n2': 'PAM_IGNORE'}
    assert all(r['changed'] == 0 for r in recap(res.stdout).values())
    # no scratch directory left behind
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.endswith('.slurm-adopt-check')]


def test_explain_without_a_user_refuses(two_nodes):
    res = playbook(two_nodes['inventory'], {})
    assert res.returncode != 0
    assert 'Name the user whose login to explain' in res.stdout


def test_a_node_without_an_adopt_rule_says_so(two_nodes):
    with open(os.path.join(two_nodes['base'], 'n2', 'etc', 'pam.d', 'sshd'), 'w') as handle:
        handle.write('account required pam_unix.so\n')
    out = os.path.join(two_nodes['base'], 'explain.json')
    res = playbook(two_nodes['inventory'], {'user': 'nobody', 'explain_json': out,
                                            'slurm_conf': two_nodes['slurm_conf']})
    assert res.returncode == 0, res.stdout[-6000:]
    assert re.search(r'n2\s+ERROR\s+no adopt rule in the effective sshd account stack', res.stdout)
    with open(out) as handle:
        nodes = {n['host']: n for n in json.load(handle)['nodes']}
    assert nodes['n1']['decision'] == 'PAM_PERM_DENIED'


# -- the host lab: real Slurm 22.05, real jobs --------------------------------------


# host_lab: the fixture in tests/unit/conftest.py


def lab_explain(lab, tmp_path, user):
    inventory = write_inventory(str(tmp_path / 'inventory.json'), {
        'vm': {'adopt_drift_pam_service': lab.pam_services['py']}})
    out = str(tmp_path / 'explain.json')
    res = playbook(inventory, {'user': user, 'explain_json': out, 'slurm_conf': lab.slurm_conf})
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert all(r['changed'] == 0 for r in recap(res.stdout).values())
    with open(out) as handle:
        node = json.load(handle)['nodes'][0]
    assert node['error'] is None, node
    return node


# A root-owned copy of this checkout's module, in the lab's own directory: the
# explain refuses to run, as root, a module below a directory others may write
# (a checkout under /tmp, or another checkout's module that the lab runs).
LAB_MODULE_DIR = '/var/lib/slurm-adopt-lab/host/explain-module'


def deploy(lab, *options):
    """The lab's py adopt line, with LAB_MODULE_DIR's copy of this checkout's module."""
    if os.path.isdir(LAB_MODULE_DIR):
        shutil.rmtree(LAB_MODULE_DIR)
    shutil.copytree(MODULE_SRC, LAB_MODULE_DIR, ignore=shutil.ignore_patterns('__pycache__', 'client'))
    os.chmod(LAB_MODULE_DIR, 0o755)
    line = 'account required pam_python.so %s service=%s %s' % (
        os.path.join(LAB_MODULE_DIR, 'pam_slurm_adopt.py'), lab.pam_services['py'], ' '.join(options))
    lab.set_account_line('py', line.strip())


@pytest.mark.node
def test_lab_deployed_options_change_the_explained_decision(host_lab, tmp_path):
    lab = host_lab
    bob = lab.user('bob')
    deploy(lab)
    plain = lab_explain(lab, tmp_path, bob)
    assert plain['decision'] == 'PAM_PERM_DENIED' and plain['why'].endswith('owns no jobs => deny'), plain
    assert lab.ssh('py', 'bob', 'true').rc != 0          # the real login agrees
    deploy(lab, 'action_no_jobs=ignore')
    ignored = lab_explain(lab, tmp_path, bob)
    assert ignored['decision'] == 'PAM_IGNORE', ignored
    assert 'action_no_jobs=ignore' in ignored['options'] and ignored['why'].endswith('action_no_jobs=ignore')
    # the real login agrees: the rest of the stack decides (pam_unix: bob gets in)
    assert lab.ssh('py', 'bob', 'true').rc == 0

    alice = lab.user('alice')
    first = lab.submit('alice')
    one = lab_explain(lab, tmp_path, alice)
    assert one['decision'] == 'PAM_SUCCESS' and one['detail'] == 'adopt into job %d' % first, one
    second = lab.submit('alice')
    newest = lab_explain(lab, tmp_path, alice)
    assert newest['decision'] == 'PAM_SUCCESS' and newest['detail'].startswith('adopt into job'), newest
    deploy(lab, 'action_unknown=deny')
    denied = lab_explain(lab, tmp_path, alice)
    assert denied['decision'] == 'PAM_PERM_DENIED' and 'action_unknown=deny' in denied['options'], denied
    assert denied['why'] == 'Denying due to action_unknown=deny', denied
    assert lab.ssh('py', 'alice', 'true').rc != 0       # the real login is denied too
    assert second in lab.jobs_of('alice')
