# SPDX-License-Identifier: GPL-3.0-or-later
"""The first-boot logic of the drift check (roles/adopt_drift/files/
slurm_adopt_first_boot.py, image mode): the checks that need a running node
are red until they have all passed once on this boot; the run where they
pass records it; then they are judged as on any node and the periodic
HealthCheckProgram runs skip the login check.  The login check itself runs
for real in tests/image/test_image_boot.py (a booted image)."""

import importlib.util
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'roles', 'adopt_drift', 'files')


def load(name, filename):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FILES, filename))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FB = load('slurm_adopt_first_boot_under_test', 'slurm_adopt_first_boot.py')
CHECK = load('slurm_adopt_check_under_test', 'slurm_adopt_check.py')


@pytest.fixture
def conf(tmp_path):
    return {'first_boot': {'marker': str(tmp_path / 'run' / 'first-boot.json'), 'admin_group': 'wheel'}}


def results(**states):
    return [{'check': name, 'status': status, 'message': 'm-%s' % name} for name, status in states.items()]


def test_warning_is_red_until_passed(conf):
    out = FB.settle(conf, results(module_file='ok', slurm_config='warn', logins='ok'))
    by = dict((r['check'], r) for r in out)
    assert by['slurm_config']['status'] == 'fail'
    assert by['slurm_config']['message'] == 'first boot, not passed yet: m-slurm_config'
    assert by['module_file']['status'] == 'ok' and by['logins']['status'] == 'ok'
    assert not os.path.exists(conf['first_boot']['marker'])


def test_a_failed_login_check_is_red(conf):
    out = FB.settle(conf, results(slurm_config='ok', logins='fail'))
    assert [r['status'] for r in out] == ['ok', 'fail']
    assert not os.path.exists(conf['first_boot']['marker'])


def test_passing_once_records_it_and_then_a_warning_is_a_warning(conf):
    FB.settle(conf, results(slurm_config='ok', logins='ok'))
    with open(conf['first_boot']['marker']) as handle:
        assert json.load(handle)['checks'] == ['logins', 'slurm_config']
    out = FB.settle(conf, results(slurm_config='warn'))
    assert out[0]['status'] == 'warn' and out[0]['message'] == 'm-slurm_config'


def test_only_a_run_of_every_first_boot_check_records_it(conf):
    FB.settle(conf, results(slurm_config='ok'))           # --only=slurm_config
    assert not os.path.exists(conf['first_boot']['marker'])


def test_drain_runs_skip_the_login_check_only_after_it_passed(conf):
    assert FB.skip_in_drain(conf) == set()
    FB.settle(conf, results(slurm_config='ok', logins='ok'))
    assert FB.skip_in_drain(conf) == {'logins'}


def test_no_first_boot_section_changes_nothing():
    res = results(slurm_config='warn')
    assert FB.settle({}, res) == res and FB.skip_in_drain({}) == set()
    assert FB.check_logins({}, None)[0] == 'ok'


def test_live_nodes_run_no_login_check(monkeypatch):
    """Without a first_boot section (a node set up by site.yml) the check
    list is what it was: no `logins` row."""
    called = []
    monkeypatch.setattr(CHECK, 'CHECKS', [('logins', lambda c: called.append(1) or ('ok', 'x'))])
    assert CHECK.run_checks(dict(CHECK.DEFAULTS)) == []
    assert CHECK.run_checks(dict(CHECK.DEFAULTS, first_boot={'allow': ['root']}))[0]['check'] == 'logins'
    assert called == [1]


def test_admin_member(monkeypatch):
    class G(object):
        gr_gid, gr_mem = 31000, []

    class P(object):
        def __init__(self, name, gid):
            self.pw_name, self.pw_gid = name, gid

    monkeypatch.setattr(FB.grp, 'getgrnam', lambda name: G())
    monkeypatch.setattr(FB.pwd, 'getpwall', lambda: [P('alice', 100), P('boss', 31000)])
    assert FB.admin_member('fleetwheel') == 'boss'
    G.gr_mem = ['fleetadmin']
    assert FB.admin_member('fleetwheel') == 'fleetadmin'


def test_stage_rewrites_the_pam_python_rule(tmp_path, monkeypatch):
    src = tmp_path / 'src'
    (src / 'etc' / 'pam.d').mkdir(parents=True)
    (src / 'etc' / 'pam.d' / 'sshd').write_text(
        'account sufficient pam_python.so /usr/lib/slurm-adopt/pam_slurm_adopt.py action_adopt_failure=deny\n')
    monkeypatch.setattr(FB, 'PAM_PATHS', (str(src / 'etc' / 'pam.d'),))
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    FB._stage(str(scratch), '/usr/bin/python3')
    staged = (scratch / str(src / 'etc' / 'pam.d' / 'sshd').lstrip('/')).read_text()
    assert staged == ('account sufficient pam_exec.so stdout quiet /usr/bin/python3 '
                      '/usr/lib/slurm-adopt/pam_slurm_adopt.py pam-exec action_adopt_failure=deny\n')
