# SPDX-License-Identifier: GPL-3.0-or-later
"""The drift check's node_exporter metrics, scraped from the REAL
node_exporter (Debian package prometheus-node-exporter; lab/host/install.sh
installs it): started here on 127.0.0.1 with a free port and its textfile
collector pointed at a temporary directory, then scraped over HTTP after
real runs of slurm_adopt_check.py (as a subprocess, as HealthCheckProgram
and NHC run it) that pass, that fail, and after logins decided by the real
decision flow (fake stepds, as test_flow.py) that the module counted.

node_exporter parses the textfile itself: a file that is not valid
exposition format shows as node_textfile_scrape_error 1 and its metrics
are dropped, so every scrape below also checks the format."""

import hashlib
import json
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from slurm_adopt import constants as C
from slurm_adopt import counters
from test_flow import Node

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(REPO, "roles", "adopt_drift", "files", "slurm_adopt_check.py")
MODULE_SRC = os.path.join(REPO, "roles", "adopt_module", "files")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def load_check():
    spec = importlib.util.spec_from_file_location("slurm_adopt_check_under_test", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check = load_check()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Exporter(object):
    def __init__(self, textfile_dir):
        if not os.access(NODE_EXPORTER, os.X_OK):
            pytest.fail("%s missing: install the Debian package prometheus-node-exporter "
                        "(lab/host/install.sh)" % NODE_EXPORTER)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, "--web.listen-address=127.0.0.1:%d" % self.port,
             "--collector.disable-defaults", "--collector.textfile",
             "--collector.textfile.directory=%s" % textfile_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.scrape()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    pytest.fail("node_exporter did not come up: %s" % self.proc.stderr.read().decode()[-2000:])
                time.sleep(0.1)

    def scrape(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as resp:
            return resp.read().decode()

    def samples(self):
        """{(name, frozenset(labels)): float} of the slurm_adopt_* and textfile metrics."""
        out = {}
        for line in self.scrape().splitlines():
            if line.startswith("#") or not line.startswith(("slurm_adopt_", "node_textfile_")):
                continue
            match = re.match(r'^(\w+)(?:\{(.*)\})? (\S+)$', line)
            assert match, line
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            out[(match.group(1), labels)] = float(match.group(3))
        return out

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, "%s%s not scraped; have %s" % (name, labels, sorted(k for k in samples if k[0] == name))
    return samples[key]


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def node_tree():
    """A node below /run (root-owned all the way up, as the module-file and
    counter checks require; not /tmp, which anyone may write): the module and
    its package, an sshd account stack whose last rule is the adopt rule, the
    PAM modules it names, the textfile and counter directories."""
    base = tempfile.mkdtemp(prefix="saf-metrics-", dir="/run")
    os.chmod(base, 0o755)
    mod = os.path.join(base, "mod")
    os.makedirs(mod)
    shutil.copy(os.path.join(MODULE_SRC, "pam_slurm_adopt.py"), mod)
    shutil.copytree(os.path.join(MODULE_SRC, "slurm_adopt"), os.path.join(mod, "slurm_adopt"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "etc", "pam.d"))
    with open(os.path.join(root, "etc", "pam.d", "sshd"), "w") as handle:
        handle.write("account required pam_unix.so\n"
                     "account required pam_python.so %s/pam_slurm_adopt.py\n"
                     "session required pam_unix.so\n" % mod)
    lib = "/security"                      # PAM module dirs are looked up below the check's root
    os.makedirs(os.path.join(root, "security"))
    for name in ("pam_unix.so", "pam_python.so"):
        open(os.path.join(root, "security", name), "w").close()
    textfile = os.path.join(base, "textfile")
    os.makedirs(textfile)
    conf = {
        "module_path": os.path.join(mod, "pam_slurm_adopt.py"),
        "module_sha256": sha256(os.path.join(mod, "pam_slurm_adopt.py")),
        "package_dir": os.path.join(mod, "slurm_adopt"),
        "package_digest": check.digest(os.path.join(MODULE_SRC, "slurm_adopt")),
        "root": root, "pam_dir": "/etc/pam.d", "pam_state_dir": os.path.join(base, "state"),
        "pam_service": "sshd", "pam_module_dirs": [lib], "logind": "any", "pam_systemd": "absent",
        "check_slurm": False, "textfile_dir": textfile, "counter_dir": os.path.join(base, "counters"),
    }
    path = os.path.join(base, "check.json")
    with open(path, "w") as handle:
        json.dump(conf, handle)
    yield {"base": base, "config": path, "conf": conf, "textfile": textfile}
    shutil.rmtree(base)


def run_check(tree, command="check", *extra):
    return subprocess.run([sys.executable, CHECK, command, "--config", tree["config"]] + list(extra),
                          capture_output=True, text=True, timeout=120, check=False)


def test_real_node_exporter_serves_the_check_results_and_login_counts(node_tree, tmp_path, monkeypatch):
    exporter = Exporter(node_tree["textfile"])
    try:
        before = time.time()
        res = run_check(node_tree)
        assert res.returncode == 0, res.stdout + res.stderr
        after = time.time()
        got = exporter.samples()
        assert value(got, "node_textfile_scrape_error") == 0
        assert value(got, "slurm_adopt_status", state="ok") == 1
        assert value(got, "slurm_adopt_status", state="fail") == 0
        for name in ("module_file", "account_stack", "admin_access", "bypass", "pam_systemd", "logind", "interface"):
            assert value(got, "slurm_adopt_check_status", check=name, state="ok") == 1, name
            assert value(got, "slurm_adopt_check_status", check=name, state="fail") == 0, name
        assert before <= value(got, "slurm_adopt_last_check_timestamp_seconds") <= after
        version = re.search(r'__version__ = "(.*)"',
                            open(os.path.join(MODULE_SRC, "slurm_adopt", "__init__.py")).read()).group(1)
        assert value(got, "slurm_adopt_module_info", version=version, sha256=node_tree["conf"]["module_sha256"],
                     package_digest=node_tree["conf"]["package_digest"], release="") == 1
        assert value(got, "slurm_adopt_login_counting") == 1
        for result in ("adopted", "allowed", "ignored", "denied"):
            assert value(got, "slurm_adopt_logins_since_last_check", result=result) == 0

        # logins decided by the real flow, counted by the module into the
        # files the check created
        monkeypatch.setattr(counters, "COUNTER_DIR", node_tree["conf"]["counter_dir"])
        node = Node(tmp_path)
        try:
            assert node.run()[0] == C.PAM_PERM_DENIED
            assert node.run()[0] == C.PAM_PERM_DENIED
            node.job(7)
            assert node.run()[0] == C.PAM_SUCCESS
        finally:
            node.close()

        # a failing run: the module file changed
        with open(node_tree["conf"]["module_path"], "a") as handle:
            handle.write("# changed\n")
        res = run_check(node_tree)
        assert res.returncode == 2, res.stdout + res.stderr
        got = exporter.samples()
        assert value(got, "node_textfile_scrape_error") == 0
        assert value(got, "slurm_adopt_status", state="fail") == 1
        assert value(got, "slurm_adopt_check_status", check="module_file", state="fail") == 1
        assert value(got, "slurm_adopt_check_status", check="module_file", state="ok") == 0
        assert value(got, "slurm_adopt_check_status", check="account_stack", state="ok") == 1
        changed = sha256(node_tree["conf"]["module_path"])
        assert value(got, "slurm_adopt_module_info", version=version, sha256=changed,
                     package_digest=node_tree["conf"]["package_digest"], release="") == 1
        assert value(got, "slurm_adopt_logins_since_last_check", result="denied") == 2
        assert value(got, "slurm_adopt_logins_since_last_check", result="adopted") == 1
        assert value(got, "slurm_adopt_logins_since_last_check", result="allowed") == 0
        assert value(got, "slurm_adopt_logins_total", result="denied") == 2
        assert value(got, "slurm_adopt_login_errors_since_last_check") == 0

        # HealthCheckProgram's run (drain; no scontrol here: it cannot drain) also writes them;
        # the counts are those since the previous run
        (tmp_path / "again").mkdir()
        node = Node(tmp_path / "again")
        try:
            node.job(9, add_rc=-1)
            rc, _ctx, adopter, _log = node.run("action_adopt_failure=allow")
            assert rc == C.PAM_SUCCESS and adopter.adopted_job is None
        finally:
            node.close()
        res = run_check(node_tree, "drain")
        assert res.returncode == 0, res.stdout + res.stderr
        got = exporter.samples()
        assert value(got, "slurm_adopt_status", state="fail") == 1
        assert value(got, "slurm_adopt_logins_since_last_check", result="denied") == 0
        assert value(got, "slurm_adopt_logins_since_last_check", result="allowed") == 1
        assert value(got, "slurm_adopt_login_errors_since_last_check") == 1
        assert value(got, "slurm_adopt_logins_total", result="denied") == 2
        assert value(got, "slurm_adopt_logins_total", result="allowed") == 1
        assert value(got, "slurm_adopt_login_errors_total") == 1

        # fixed again: green, and nothing left behind but the one .prom file
        shutil.copy(os.path.join(MODULE_SRC, "pam_slurm_adopt.py"), node_tree["conf"]["module_path"])
        assert run_check(node_tree).returncode == 0
        got = exporter.samples()
        assert value(got, "slurm_adopt_status", state="ok") == 1
        assert os.listdir(node_tree["textfile"]) == ["slurm_adopt.prom"]
    finally:
        exporter.close()


def test_runs_with_only_or_no_metrics_leave_the_metrics_alone(node_tree):
    assert run_check(node_tree, "check", "--only", "account_stack").returncode == 0
    assert run_check(node_tree, "check", "--no-metrics").returncode == 0
    assert os.listdir(node_tree["textfile"]) == []
    assert not os.path.exists(node_tree["conf"]["counter_dir"])


def test_metrics_are_off_without_a_textfile_directory(node_tree):
    os.rmdir(node_tree["textfile"])
    res = run_check(node_tree, "check", "--json")
    assert res.returncode == 0
    assert '"metrics": "skipped: %s does not exist' % node_tree["textfile"] in res.stdout
    conf = dict(node_tree["conf"], textfile_dir="")
    assert check.write_metrics(conf, [], 0.1) == "off"


def test_counter_rotation_loses_no_login(node_tree, monkeypatch):
    """Past COUNTER_ROTATE bytes a file is replaced by an empty one; a login
    whose write lands in the old inode after the rotation is counted by the
    next run, and the old file is then removed."""
    monkeypatch.setattr(check, "COUNTER_ROTATE", 10)
    directory = node_tree["conf"]["counter_dir"]
    assert check.read_login_counters(directory)["available"]
    path = os.path.join(directory, "denied")
    for login in range(12):
        assert counters.bump("denied", directory), login
    late = os.open(path, os.O_WRONLY | os.O_APPEND)   # a login that opened the file before the rotation
    first = check.read_login_counters(directory)
    assert first["since"]["denied"] == 12 and os.path.getsize(path) == 0
    assert os.path.exists(path + ".old")
    os.write(late, b".")
    os.close(late)
    assert counters.bump("denied", directory)
    second = check.read_login_counters(directory)
    assert second["since"]["denied"] == 2 and second["total"]["denied"] == 14
    assert not os.path.exists(path + ".old")
    assert check.read_login_counters(directory)["since"]["denied"] == 0


def test_an_unsafe_counter_directory_is_not_used(tmp_path):
    """/tmp is world-writable: a counter directory below it is refused (a
    user could plant the files the module appends to)."""
    got = check.read_login_counters(str(tmp_path / "counters"))
    assert not got["available"] and "writable" in got["why"]


def test_label_values_are_escaped():
    lines = []
    check._metric(lines, "slurm_adopt_x", "gauge", "h", [({"a": 'q"b\\n\nz'}, 1)])
    assert lines[-1] == 'slurm_adopt_x{a="q\\"b\\\\n\\nz"} 1'


# -- the host lab: real sshd, real pam_python, real Slurm 22.05 ---------------------


# host_lab: the fixture in tests/unit/conftest.py


@pytest.mark.node
def test_lab_real_ssh_logins_are_counted(host_lab, node_tree):
    """Logins through the lab's real sshd, with this checkout's module loaded
    by pam_python, land in the module's own counter directory; the check
    turns them into the scraped counts."""
    lab = host_lab
    created = [d for d in (os.path.dirname(counters.COUNTER_DIR), counters.COUNTER_DIR) if not os.path.exists(d)]
    with open(node_tree["config"]) as handle:
        conf = json.load(handle)
    conf["counter_dir"] = counters.COUNTER_DIR
    with open(node_tree["config"], "w") as handle:
        json.dump(conf, handle)
    lab.set_account_line("py", "account required pam_python.so %s service=%s"
                         % (os.path.join(MODULE_SRC, "pam_slurm_adopt.py"), lab.pam_services["py"]))
    exporter = Exporter(node_tree["textfile"])
    try:
        assert run_check(node_tree).returncode == 0
        assert value(exporter.samples(), "slurm_adopt_login_counting") == 1
        assert lab.ssh("py", "bob", "true").rc != 0                      # no job: denied
        job = lab.submit("alice")
        assert lab.ssh("py", "alice", "true").job_id == job              # adopted
        assert lab.ssh("py", "carol", "true").rc != 0                    # denied
        res = run_check(node_tree)
        assert res.returncode == 0, res.stdout + res.stderr
        got = exporter.samples()
        assert value(got, "slurm_adopt_logins_since_last_check", result="denied") == 2
        assert value(got, "slurm_adopt_logins_since_last_check", result="adopted") == 1
        assert value(got, "slurm_adopt_logins_since_last_check", result="allowed") == 0
        assert value(got, "slurm_adopt_login_errors_since_last_check") == 0
    finally:
        exporter.close()
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True)
