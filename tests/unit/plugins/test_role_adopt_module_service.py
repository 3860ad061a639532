# SPDX-License-Identifier: GPL-3.0-or-later
"""Role adopt_module with adopt_module_interface: service, end to end with
ansible-playbook on this machine, below a root-owned scratch directory
(outside the checkout and /tmp): the module directory, the client's PAM
module directory, the systemd root (<root>/etc/systemd/system) and the
socket path are all in it.  The client is really compiled (gcc and
libpam0g-dev of this machine); the socket is really enabled (systemctl
--root, offline: this machine's PID 1 is not systemd, so the role must not
start it and must say so)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import _COLL_ROOT

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playbooks', 'adopt_role_local.yml')
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
CLIENT = 'pam_slurm_adopt_client.so'

# each test runs ansible-playbook several times (up to a minute each on a busy machine)
pytestmark = pytest.mark.timeout(2400)


def play(extra, check=False):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.fail('ansible-playbook is not next to %s: use the venv of scripts/venv.sh' % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_COLL_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    extra = dict(extra, ansible_python_interpreter=sys.executable)
    cmd = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', PLAYBOOK, '-e', json.dumps(extra)]
    if check:
        cmd += ['--check', '--diff']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    return proc.returncode, out['stats']['localhost'], out


def tasks(out):
    """{task name: [result of localhost]} of a json-callback run (handlers too)."""
    found = {}
    for playrun in out['plays']:
        for task in playrun['tasks']:
            name = task['task']['name'].split(' : ', 1)[-1]
            found.setdefault(name, []).append(task['hosts'].get('localhost', {}))
    return found


def sha256(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def snapshot(base):
    """Every path below base with its type (what an exact removal must restore)."""
    out = {}
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, base)] = 'l' if os.path.islink(path) else ('d' if os.path.isdir(path) else 'f')
    return out


@pytest.fixture
def site():
    if os.geteuid() != 0:
        pytest.fail('needs root (the role installs root-owned files)')
    for tool in ('gcc', 'systemctl'):
        if shutil.which(tool) is None:
            pytest.fail('%s is missing: the role builds the client with gcc and enables units with systemctl' % tool)
    if not os.path.exists('/usr/include/security/pam_modules.h'):
        pytest.fail('libpam0g-dev is missing: the role builds the client against it')
    base = tempfile.mkdtemp(prefix='hpc-svc-', dir='/var/lib')
    os.chmod(base, 0o755)
    for sub in ('pam.d', 'security', 'sysroot/etc/systemd/system', 'run'):
        os.makedirs(os.path.join(base, sub))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def service_vars(base, state='present', **more):
    out = {'test_role': 'adopt_module', 'adopt_module_state': state, 'adopt_module_interface': 'service',
           'adopt_module_dir': os.path.join(base, 'slurm-adopt'), 'adopt_module_install_packages': False,
           'adopt_module_pam_dir': os.path.join(base, 'pam.d'),
           'adopt_module_client_dir': os.path.join(base, 'security'),
           'adopt_module_systemd_root': os.path.join(base, 'sysroot'),
           'adopt_module_service_socket': os.path.join(base, 'run', 'adopt.sock')}
    out.update(more)
    return out


def unit(base, name):
    return os.path.join(base, 'sysroot', 'etc', 'systemd', 'system', name)


def record(base):
    with open(os.path.join(base, 'slurm-adopt', 'client.build-id')) as handle:
        return json.load(handle)


def test_service_install_check_mode_idempotent_rebuild_and_exact_removal(site):
    before = snapshot(site)
    target = os.path.join(site, 'slurm-adopt')
    client = os.path.join(site, 'security', CLIENT)

    # check mode: says what it would build, writes nothing
    rc, stats, out = play(service_vars(site), check=True)
    assert rc == 0 and stats['changed'] > 0, json.dumps(out)[-3000:]
    would = tasks(out)['Report the client build that check mode would do'][0]
    assert re.match(r'would build %s: sh %s/releases/[0-9a-f]{16}/client/build.sh %s %s/run/adopt.sock '
                    r'/usr/bin/python3 %s/slurm_adopt_service.py$' % (client, target, client, site, target),
                    would['msg']), would
    assert snapshot(site) == before

    # install
    rc, stats, out = play(service_vars(site))
    assert rc == 0, json.dumps(out)[-3000:]
    found = tasks(out)
    assert found['Build pam_slurm_adopt_client.so (the compiler and PAM headers of the node; renamed into place)'][0][
        'changed'] is True
    st = os.stat(client)
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (0, 0, '0o644')
    rec = record(site)
    assert rec['output'] == sha256(client) and rec['path'] == client
    assert rec['socket'] == os.path.join(site, 'run', 'adopt.sock')
    assert rec['launcher'] == target + '/slurm_adopt_service.py'
    # the client really has the socket, the interpreter and the launcher compiled in
    with open(client, 'rb') as handle:
        blob = handle.read()
    for path in (rec['socket'], rec['launcher'], b'/usr/bin/python3'.decode()):
        assert path.encode() + b'\0' in blob, path
    # the launcher is a stable path into current, with the client's source in the release
    assert os.readlink(os.path.join(target, 'slurm_adopt_service.py')) == 'current/slurm_adopt_service.py'
    for name in ('client/pam_slurm_adopt_client.c', 'client/build.sh', 'slurm_adopt/service.py'):
        assert os.path.isfile(os.path.join(target, 'current', name)), name
    # the units, templated; the socket enabled (offline) and not started, and the run says so
    with open(unit(site, 'slurm-adopt.socket')) as handle:
        assert 'ListenSequentialPacket=%s/run/adopt.sock\n' % site in handle.read()
    with open(unit(site, 'slurm-adopt.service')) as handle:
        assert ('ExecStart=/usr/bin/python3 -I -S %s/slurm_adopt_service.py serve --idle-exit 600\n' % target
                in handle.read())
    wants = unit(site, 'sockets.target.wants/slurm-adopt.socket')
    assert os.path.islink(wants)
    enabled = subprocess.run(['systemctl', '--root', os.path.join(site, 'sysroot'), 'is-enabled',
                              'slurm-adopt.socket'], capture_output=True, text=True, check=False)
    assert enabled.stdout.strip() == 'enabled'
    said = found['Say that the socket is not started'][0]
    assert 'enabled, not started' in said['msg'] and 'fallback child' in said['msg'], said
    assert not os.path.exists(os.path.join(site, 'run', 'adopt.sock'))
    # the restart handler was notified (a new release, new units) and did not pretend to restart
    handler = found['Restart the adoption service'][0]
    assert handler.get('skipped') is True, handler
    assert found['Enable slurm-adopt.socket, and start it where the launcher is in place (systemd reloaded first when a unit changed)'][0].get(
        'skipped') is True

    # second run: nothing changes, no handler
    rc, stats, out = play(service_vars(site))
    assert rc == 0 and stats['changed'] == 0, json.dumps(out)[-3000:]
    assert 'Restart the adoption service' not in tasks(out)
    assert record(site) == rec

    # a client that is not the one recorded (replaced, corrupted) is rebuilt
    with open(client, 'ab') as handle:
        handle.write(b'tampered')
    rc, stats, out = play(service_vars(site))
    assert rc == 0 and stats['changed'] > 0
    assert sha256(client) == rec['output'] and record(site) == rec

    # a path compiled into the client changes: rebuilt, units follow, handler notified
    rc, stats, out = play(service_vars(site, adopt_module_service_socket=os.path.join(site, 'run', 'other.sock'),
                                       adopt_module_service_idle_exit=60))
    assert rc == 0 and stats['changed'] > 0
    assert record(site)['inputs'] != rec['inputs'] and record(site)['output'] == sha256(client)
    with open(client, 'rb') as handle:
        assert (os.path.join(site, 'run', 'other.sock') + '\0').encode() in handle.read()
    with open(unit(site, 'slurm-adopt.service')) as handle:
        assert '--idle-exit 60\n' in handle.read()
    assert tasks(out)['Restart the adoption service'][0].get('skipped') is True

    # removal refused while a PAM rule names the client (no path: the module directory's name)
    with open(os.path.join(site, 'pam.d', 'sshd'), 'w') as handle:
        handle.write('account sufficient pam_slurm_adopt_client.so action_no_jobs=deny\n')
    rc, stats, out = play(service_vars(site, 'absent'))
    refused = tasks(out)['Refuse to remove a module that PAM still loads'][0]
    assert rc != 0 and refused['msg'].startswith('%s/pam.d/sshd still load the module' % site), refused
    assert os.path.exists(client) and os.path.exists(unit(site, 'slurm-adopt.socket'))
    os.unlink(os.path.join(site, 'pam.d', 'sshd'))

    # check mode of the removal writes nothing; the removal gives back exactly what was there
    rc, stats, out = play(service_vars(site, 'absent'), check=True)
    assert rc == 0 and stats['changed'] > 0 and os.path.exists(client)
    rc, stats, out = play(service_vars(site, 'absent'))
    assert rc == 0, json.dumps(out)[-3000:]
    assert snapshot(site) == before
    rc, stats, out = play(service_vars(site, 'absent'))
    assert rc == 0 and stats['changed'] == 0


def test_units_pass_systemd_analyze_verify(site):
    """The rendered units are valid for this machine's systemd (offline
    verification: syntax, known settings, ExecStart's interpreter)."""
    rc, _stats, out = play(service_vars(site))
    assert rc == 0, json.dumps(out)[-3000:]
    proc = subprocess.run(['systemd-analyze', 'verify', '--man=no', unit(site, 'slurm-adopt.socket'),
                           unit(site, 'slurm-adopt.service')], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rc, _stats, out = play(service_vars(site, 'absent'))
    assert rc == 0


def test_client_dir_defaults_to_the_pam_module_directory(site):
    """Empty adopt_module_client_dir: the directory holding pam_unix.so on the
    node (here Debian's multiarch directory), resolved through /lib ->
    usr/lib.  Check mode only: nothing is written into the real directory."""
    pam_unix = subprocess.run(['sh', '-c', 'for d in /usr/lib/x86_64-linux-gnu/security /lib/x86_64-linux-gnu/security; '
                               'do [ -e $d/pam_unix.so ] && cd $d && pwd -P && break; done'],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert pam_unix, 'no pam_unix.so on this machine'
    rc, _stats, out = play(service_vars(site, adopt_module_client_dir=''), check=True)
    assert rc == 0, json.dumps(out)[-3000:]
    would = tasks(out)['Report the client build that check mode would do'][0]['msg']
    assert would.startswith('would build %s/%s:' % (pam_unix, CLIENT)), would
    assert not os.path.exists(os.path.join(pam_unix, CLIENT))


# ---------------------------------------------------------------------------
# end to end: what the roles install answers through the real libpam
# ---------------------------------------------------------------------------

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # tests/unit

from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_eval  # noqa: E402
from ansible_collections.hpc.slurm_adopt.plugins.module_utils import _pam_edit as pam_edit, _pam_guard as pam_guard, _pam_stack as pam_stack  # noqa: E402
from test_service_support import MSG_NO_JOBS, UID, USER, Node  # noqa: E402

MARK = 'the-stack-went-on-after-the-client'


def _pam(tree, line, user, overlay, env):
    """One pam_acct_mgmt of service sshd whose account stack is ``line`` then
    a pam_echo that shows MARK only when libpam went on past it."""
    os.makedirs(os.path.join(tree, 'etc', 'pam.d'), exist_ok=True)
    with open(os.path.join(tree, 'etc', 'pam.d', 'sshd'), 'w') as handle:
        handle.write(line + '\naccount required pam_echo.so %s\n' % MARK)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        out = _pam_eval.evaluate([{'service': 'sshd', 'user': user, 'op': 'account', 'timeout': 60}],
                                 tree=tree, module_overlay=overlay)
    finally:
        os.environ.clear()
        os.environ.update(old)
    result = out['results'][0]
    assert result['status'] == 'ok', result
    result['texts'] = [m['text'] for m in result['messages']]
    return result


def test_installed_client_and_service_answer_through_the_real_libpam(site):
    """The role builds the client and installs the launcher; pam_edit writes
    the client's rule; the real libpam loads the built client, which asks the
    service started from the installed launcher (through <dir>/current).  A
    user with a job is adopted (SLURM_JOB_ID set), one without is denied with
    the C module's message, root gets PAM_IGNORE (libpam goes on past the
    rule).  pam_guard's model of the same rule, run through the same libpam,
    answers as the client does for the users without a job."""
    rc, _stats, out = play(service_vars(site))
    assert rc == 0, json.dumps(out)[-3000:]
    client = os.path.join(site, 'security', CLIENT)
    launcher = os.path.join(site, 'slurm-adopt', 'slurm_adopt_service.py')
    sock = os.path.join(site, 'run', 'adopt.sock')
    node = Node()
    service = None
    try:
        stepd = node.stepd(77, UID)
        service = subprocess.Popen(['env', '-i', 'PATH=/usr/bin:/bin', '/usr/bin/python3', '-I', '-S', launcher,
                                    'serve', '--socket', sock, '--idle-exit', '0'],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not os.path.exists(sock):
            assert service.poll() is None and time.monotonic() < end, 'the installed service did not listen'
            time.sleep(0.05)
        params = {'interface': 'service', 'script': '/usr/lib/slurm-adopt/pam_slurm_adopt.py',
                  'options': {'action_adopt_failure': 'deny', 'action_generic_failure': 'deny',
                              'nodename': node.args[0].split('=', 1)[1]}}
        module, args = pam_edit.adopt_rule_words(params)
        line = ' '.join(['account', 'required', module] + args)
        assert line.startswith('account required pam_slurm_adopt_client.so action_adopt_failure=deny ')
        tree = os.path.join(node.dir, 'tree')
        overlay = {CLIENT: client}
        env = {'SLURM_CONF': node.conf}

        adopted = _pam(tree, line, USER, overlay, env)
        assert adopted['rc_name'] == 'PAM_SUCCESS' and adopted['env'].get('SLURM_JOB_ID') == '77', adopted
        assert len(stepd.added) == 1
        assert not any('did not answer' in ln for ln in adopted.get('log') or []), adopted.get('log')
        real = {user: _pam(tree, line, user, overlay, env) for user in ('daemon', 'root')}
        # PAM_IGNORE for root, seen as such: success would end the stack here, ignore goes on
        jumpy = line.replace('account required ', 'account [success=done ignore=ignore default=die] ', 1)
        root_ignored = _pam(tree, jumpy, 'root', overlay, env)

        # pam_guard's model of this very line, through the same libpam
        parsed = [ln for ln in pam_stack.parse(line + '\n').lines if ln.kind == 'rule'][0]
        assert pam_stack.is_adopt_rule(parsed) and pam_guard.adopt_rule_facts(parsed)[0] == 'pam_python'
        model_line = pam_guard.model_line(parsed).split(' #')[0]
        os.makedirs(os.path.join(tree, 'etc', 'security'), exist_ok=True)
        with open(os.path.join(tree, pam_guard.MODEL_ACCESS_FILE.lstrip('/')), 'w') as handle:
            handle.write(pam_guard.MODEL_ACCESS_TEXT)
        model = {user: _pam(tree, model_line, user, {}, env) for user in ('daemon', 'root')}
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        node.close()
    # a required rule: libpam runs the rest of the stack (MARK) after a denial too
    assert real['daemon']['rc_name'] == 'PAM_PERM_DENIED' and real['daemon']['texts'] == [MSG_NO_JOBS, MARK], real
    assert real['root']['rc_name'] == 'PAM_SUCCESS' and real['root']['texts'] == [MARK], real
    assert root_ignored['rc_name'] == 'PAM_SUCCESS' and root_ignored['texts'] == [MARK], root_ignored
    for user in ('daemon', 'root'):
        assert model[user]['rc_name'] == real[user]['rc_name'], (user, model[user], real[user])
    rc, _stats, out = play(service_vars(site, 'absent'))
    assert rc == 0
