# SPDX-License-Identifier: GPL-3.0-or-later
"""The entry points (slurm_adopt/entry.py and the pam_slurm_adopt.py shim):
the pam_python hook, the pam_exec helper and explain, each against a
temporary node with fake stepds (tests/unit/test_flow.py's Node)."""

import os
import shutil
import subprocess
import sys

import pytest

from slurm_adopt import constants as C
from slurm_adopt import entry
import pam_slurm_adopt as shim

from test_flow import NODE, OTHER_UID, UID, USER, Node

MODULE_DIR = os.path.dirname(os.path.abspath(shim.__file__))
# Under `make mutation` the package is mutmut's copy, whose functions import
# mutmut: an interpreter started with -S (no site-packages) cannot run it.
NEEDS_PLAIN_PACKAGE = pytest.mark.skipif(bool(os.environ.get("MUTANT_UNDER_TEST")),
                                         reason="python3 -S cannot import mutmut's trampolines")


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.close()


class FakePamh(object):
    """What pam_python hands the hook: items as attributes, env, conversation."""
    PAM_ERROR_MSG = 3

    def __init__(self, user=USER, service="sshd"):
        self.user = user
        self.service = service
        self.env = {}
        self.said = []

    class Message(object):
        def __init__(self, style, text):
            self.style, self.text = style, text

    def conversation(self, message):
        self.said.append(message.text)


def hook(node, *options, pamh=None, monkeypatch=None):
    pamh = pamh or FakePamh()
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    rc = entry.pam_sm_acct_mgmt(pamh, 0, ["/path/pam_slurm_adopt.py", "nodename=%s" % NODE]
                                + list(options))
    return rc, pamh


# -- the pam_python hook -------------------------------------------------------------

def test_hook_adopts_and_sets_the_pam_environment(node, monkeypatch):
    fake = node.job(17, x11=(10, "/home/x/.Xauthority"))
    rc, pamh = hook(node, monkeypatch=monkeypatch)
    assert rc == C.PAM_SUCCESS and fake.added == [os.getpid()]
    assert pamh.env == {"SLURM_JOB_ID": "17", "DISPLAY": "localhost:10.0",
                        "XAUTHORITY": "/home/x/.Xauthority"}


def test_hook_denies_with_the_message(node, monkeypatch):
    node.job(9, uid=OTHER_UID)
    rc, pamh = hook(node, monkeypatch=monkeypatch)
    assert rc == C.PAM_PERM_DENIED and pamh.said == [C.MSG_NO_JOBS]


@pytest.mark.parametrize("action,rc", [("deny", C.PAM_PERM_DENIED), ("allow", C.PAM_SUCCESS),
                                       ("ignore", C.PAM_IGNORE)])
def test_hook_internal_error_applies_action_generic_failure(node, monkeypatch, action, rc):
    """Item 8: an error outside the flow (here: the log cannot be made)
    answers what action_generic_failure says, never PAM_IGNORE by default
    and never PAM_SUCCESS under deny."""
    def broken(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(entry, "Log", broken)
    got, _pamh = hook(node, "action_generic_failure=" + action, monkeypatch=monkeypatch)
    assert got == rc


def test_hook_with_unreadable_items_is_a_session_error(node, monkeypatch):
    class NoItems(FakePamh):
        @property
        def user(self):
            raise RuntimeError("no item")

        @user.setter
        def user(self, value):
            pass
    rc, _pamh = hook(node, pamh=NoItems(), monkeypatch=monkeypatch)
    assert rc == C.PAM_SESSION_ERR


# -- the shim: a broken install ------------------------------------------------------

@pytest.fixture
def broken_install(tmp_path):
    """The shim next to a slurm_adopt package that cannot be imported."""
    shutil.copy(os.path.join(MODULE_DIR, "pam_slurm_adopt.py"), str(tmp_path))
    pkg = tmp_path / "slurm_adopt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('half-installed')\n")
    return tmp_path


SHIM_PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
import pam_slurm_adopt
print(pam_slurm_adopt.pam_sm_acct_mgmt(object(), 0, [sys.argv[1] + "/pam_slurm_adopt.py"] + sys.argv[2:]))
"""


@pytest.mark.parametrize("options,rc", [([], C.PAM_IGNORE),
                                        (["action_generic_failure=deny"], C.PAM_PERM_DENIED),
                                        (["action_generic_failure=allow"], C.PAM_SUCCESS),
                                        (["ACTION_GENERIC_FAILURE=Denyx"], C.PAM_PERM_DENIED)])
def test_broken_install_applies_action_generic_failure(broken_install, options, rc):
    p = subprocess.run([sys.executable, "-I", "-c", SHIM_PROBE, str(broken_install)] + options,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) == rc


@NEEDS_PLAIN_PACKAGE
@pytest.mark.parametrize("options,status", [(["action_generic_failure=deny"], 1), ([], 0)])
def test_broken_install_under_pam_exec(broken_install, options, status):
    p = subprocess.run([sys.executable, "-I", "-S", str(broken_install / "pam_slurm_adopt.py"),
                        "pam-exec"] + options, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30, check=False)
    assert p.returncode == status, p.stderr


def test_shim_loads_the_package_next_to_it():
    assert shim._load(shim.__file__) is entry


PINNED_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("shim", sys.argv[1])
shim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shim)
print(shim._load(sys.argv[1]).__file__)
"""


@NEEDS_PLAIN_PACKAGE
def test_shim_pins_the_release_that_current_points_at(tmp_path):
    """The PAM line names <dir>/current/pam_slurm_adopt.py. The package is
    imported from the release `current` resolved to, so a switch of `current`
    during a login cannot mix modules of two releases."""
    release = tmp_path / "releases" / "r1"
    shutil.copytree(MODULE_DIR, str(release), ignore=shutil.ignore_patterns("__pycache__", "client"))
    os.symlink("releases/r1", str(tmp_path / "current"))
    p = subprocess.run([sys.executable, "-I", "-S", "-c", PINNED_PROBE,
                        str(tmp_path / "current" / "pam_slurm_adopt.py")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == str(release / "slurm_adopt" / "entry.py")


# -- the pam_exec helper -------------------------------------------------------------

def exec_env(pam_env=(), items=None, after=()):
    """The environment pam_exec builds: PAM env, the items, PAM_TYPE, then
    what /usr/bin/env on the command line appends."""
    items = {"PAM_SERVICE": "sshd", "PAM_USER": USER, "PAM_TTY": "ssh",
             "PAM_RHOST": "127.0.0.1", "PAM_TYPE": "account"} if items is None else items
    entries = list(pam_env)
    for name in entry.PAM_EXEC_ITEMS + ("PAM_TYPE",):
        if name in items:
            entries.append("%s=%s" % (name, items[name]))
    return entries + list(after)


def test_pam_exec_items_ignore_the_pam_environment():
    """Item 6: an earlier module's PAM_USER, PAM_SERVICE, PAM_TYPE or
    SLURM_CONF in the PAM environment shadows nothing."""
    env = exec_env(pam_env=["PAM_USER=root", "PAM_TYPE=session", "PAM_SERVICE=cron",
                            "SLURM_CONF=/tmp/evil.conf", "SLURMD_NODENAME=evil"],
                   after=["SLURM_CONF=/etc/slurm/site.conf"])
    items, environ = entry.pam_exec_items(env)
    assert items["PAM_USER"] == USER and items["PAM_SERVICE"] == "sshd"
    assert items["PAM_TYPE"] == "account"
    assert environ == {"SLURM_CONF": "/etc/slurm/site.conf"}


def test_pam_exec_missing_user_item_is_not_taken_from_the_pam_environment():
    items = {"PAM_SERVICE": "sshd", "PAM_TYPE": "account"}
    got, environ = entry.pam_exec_items(exec_env(pam_env=["PAM_USER=victim"], items=items))
    assert "PAM_USER" not in got and environ == {}


def test_pam_exec_layout_not_from_pam_exec():
    assert entry.pam_exec_items(["PATH=/bin", "PAM_USER=x"]) == ({}, {})


def run_exec(node, env, *options):
    return entry.pam_exec_main(["nodename=%s" % NODE] + list(options), env)


def conf_after(node):
    return ["SLURM_CONF=%s" % node.conf]


def test_pam_exec_adopts_the_parent(node, monkeypatch):
    fake = node.job(17)
    assert run_exec(node, exec_env(after=conf_after(node))) == 0
    assert fake.added == [os.getppid()]


@pytest.mark.parametrize("action", ["deny", "allow"])
def test_pam_exec_exit_status_is_1_for_every_denial(node, monkeypatch, action, capsys):
    """M4: the helper must not exit 0 for a denial."""
    node.job(9, uid=OTHER_UID)
    assert run_exec(node, exec_env(after=conf_after(node))) == 1
    assert C.MSG_NO_JOBS in capsys.readouterr().out
    status = run_exec(node, exec_env(after=["SLURM_CONF=/nonexistent.conf"]),
                      "action_generic_failure=" + action)
    assert status == (1 if action == "deny" else 0)


def test_pam_exec_slurm_conf_from_the_pam_environment_is_ignored(node, tmp_path):
    """An attacker's slurm.conf (a spool dir with a fake stepd of theirs)
    named in the PAM environment is not read."""
    evil_spool = tmp_path / "evil"
    evil_spool.mkdir()
    from fakes.fake_stepd import FakeStepd
    evil = FakeStepd(str(evil_spool), NODE, 66, UID)
    evil_conf = tmp_path / "evil.conf"
    evil_conf.write_text("NodeName=%s\nSlurmdSpoolDir=%s\n" % (NODE, evil_spool))
    try:
        status = run_exec(node, exec_env(pam_env=["SLURM_CONF=%s" % evil_conf]),
                          "action_generic_failure=deny")
        assert evil.added == [] and evil.requests == []
        assert status == 1
    finally:
        evil.close()


@pytest.mark.parametrize("pam_type", ["session", "auth", None])
def test_pam_exec_outside_the_account_stack(node, pam_type):
    """A wrong PAM_TYPE used to exit 0 (success). Now it is a failure of the
    helper: action_generic_failure applies."""
    items = {"PAM_SERVICE": "sshd", "PAM_USER": USER}
    if pam_type:
        items["PAM_TYPE"] = pam_type
    env = exec_env(items=items, after=conf_after(node))
    assert run_exec(node, env, "action_generic_failure=deny") == 1
    assert run_exec(node, env) == 0


def test_pam_exec_internal_error_applies_the_action(node, monkeypatch):
    monkeypatch.setattr(entry, "Log", lambda *a, **k: 1 / 0)
    assert run_exec(node, exec_env(), "action_generic_failure=deny") == 1
    assert run_exec(node, exec_env(), "action_generic_failure=allow") == 0


def test_read_environ_keeps_duplicates_in_order(tmp_path):
    path = tmp_path / "environ"
    path.write_bytes(b"PAM_USER=evil\0A=1\0PAM_USER=real\0PAM_TYPE=account\0")
    assert entry.read_environ(str(path)) == ["PAM_USER=evil", "A=1", "PAM_USER=real",
                                             "PAM_TYPE=account"]


@NEEDS_PLAIN_PACKAGE
def test_pam_exec_end_to_end_with_a_shadowed_environment(node, tmp_path):
    """The helper as pam_exec runs it (python3 -I -S, an environment with
    duplicate names in pam_exec's order), read from /proc/self/environ."""
    fake = node.job(17)
    script = os.path.join(MODULE_DIR, "pam_slurm_adopt.py")
    env_block = ["PAM_USER=root", "PAM_TYPE=session", "SLURM_CONF=/nonexistent",
                 "PAM_SERVICE=sshd", "PAM_USER=%s" % USER, "PAM_TYPE=account",
                 "SLURM_CONF=%s" % node.conf]
    argv = [sys.executable, "-I", "-S", script, "pam-exec", "nodename=%s" % NODE,
            "action_generic_failure=deny"]
    # execve(2) takes the block as it is, duplicates included (os.execve and
    # env(1) would merge them): a launcher that calls libc's execve.
    launcher = ("import ctypes, sys; n = int(sys.argv[1]); env, argv = sys.argv[2:2 + n], "
                "sys.argv[2 + n:]; arr = lambda l: (ctypes.c_char_p * (len(l) + 1))"
                "(*[x.encode() for x in l], None); "
                "ctypes.CDLL(None).execve(argv[0].encode(), arr(argv), arr(env)); sys.exit(99)")
    p = subprocess.run([sys.executable, "-I", "-c", launcher, str(len(env_block))] + env_block
                       + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                       check=False)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert fake.added == [os.getpid()]


# -- explain -------------------------------------------------------------------------

def test_explain_exit_status_and_decision(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    out = []
    node.job(17)
    assert entry.explain_main([USER, "nodename=%s" % NODE], out=out.append) == 0
    assert out[-1] == "decision: PAM_SUCCESS (adopt into job 17)"
    out = []
    assert entry.explain_main(["daemon", "nodename=%s" % NODE], out=out.append) == 1
    assert out[-1] == "decision: PAM_PERM_DENIED (deny)"
    assert any(C.MSG_NO_JOBS in line for line in out)


def test_explain_adopts_nothing(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    fake = node.job(17)
    entry.explain_main([USER, "nodename=%s" % NODE], out=lambda text: None)
    assert fake.added == [] and 22 not in fake.requests


def test_main_usage():
    assert entry.main(["nonsense"]) == 2


def test_explain_header_options_and_problems(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    out = []
    entry.explain_main([USER, "--service", "sshd", "nodename=%s" % NODE, "frobnicate=1",
                        "action_unknown=deny"], out=out.append)
    assert out[0] == "pam_slurm_adopt explain: user=%s service=sshd" % USER
    assert out[1].startswith("options: ") and "action_unknown=deny" in out[1]
    assert "node_name=%s" % NODE in out[1] and "problems" not in out[1]
    assert out[2] == "  [option] ignoring unrecognized option 'frobnicate=1'"
    assert any(line.startswith("  [debug] ") for line in out)


def test_explain_with_a_remote_host(node, monkeypatch):
    """--rhost builds the connection the RPC would be asked about."""
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    node.job(20)
    node.job(21)
    seen = []
    import slurm_adopt.flow as flow_mod

    def fake_rpc(conn, port, version, munge_socket, timeout, end, log, **kwargs):
        seen.append((conn.src_text, conn.port_src, conn.port_dst, conn.af,
                     conn.ip_dst[:4]))
        return 20, "remote"
    monkeypatch.setattr(flow_mod, "callerid_rpc", fake_rpc)
    out = []
    assert entry.explain_main([USER, "--rhost", "127.0.0.2", "--rport", "4000", "--lhost",
                               "127.0.0.3", "--lport", "2222", "nodename=%s" % NODE],
                              out=out.append) == 0
    assert seen == [("127.0.0.2", 4000, 2222, 2, bytes([127, 0, 0, 3]))]
    assert out[-1] == "decision: PAM_SUCCESS (adopt into job 20)"
    out = []
    entry.explain_main([USER, "--rhost", "127.0.0.2", "nodename=%s" % NODE], out=out.append)
    assert seen[-1][:4] == ("127.0.0.2", 0, 22, 2) and seen[-1][4] == bytes([127, 0, 0, 1])
    assert entry.explain_main([USER, "--rhost", "not-an-address"], out=out.append) == 2
    assert out[-1].startswith("bad --rhost/--lhost: ")
    conn = entry._explain_conn("::1", 5, "::1", 22)
    assert conn.af == 10 and conn.src_text == "::1" and conn.port_src == 5
    assert entry._explain_conn(None, 0, None, 22) is None


def test_explain_decisions_without_adoption(node, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(node.conf))
    out = []
    node.job(20)
    node.job(21)
    assert entry.explain_main([USER, "nodename=%s" % NODE, "action_unknown=allow"],
                              out=out.append) == 0
    assert out[-1] == "decision: PAM_SUCCESS (allow without adoption)"
    out = []
    assert entry.explain_main(["root", "nodename=%s" % NODE], out=out.append) == 0
    assert out[-1] == "decision: PAM_IGNORE (no decision; the rest of the PAM stack decides)"
    out = []
    assert entry.explain_main([USER, "nodename=%s" % NODE, "action_unknown=deny"],
                              out=out.append) == 1
    assert "  -> the user would see: " + C.MSG_UNKNOWN_SOURCE in out


def test_self_check(tmp_path):
    out = []
    assert entry.self_check_main(out=out.append) == 0
    names = sorted(n[:-3] for n in os.listdir(os.path.dirname(entry.__file__))
                   if n.endswith(".py") and n != "__init__.py")
    assert out == ["pam_slurm_adopt self-check ok: python %d.%d, %d modules in %s"
                   % (sys.version_info[0], sys.version_info[1], len(names),
                      os.path.dirname(entry.__file__))]


SELF_CHECK_BROKEN = r"""
import sys
sys.path.insert(0, sys.argv[1])
from slurm_adopt import entry
out = []
print(entry.self_check_main(out=out.append))
print(out[0])
"""


@NEEDS_PLAIN_PACKAGE
def test_self_check_names_a_module_that_does_not_load(tmp_path):
    shutil.copytree(os.path.join(MODULE_DIR, "slurm_adopt"), str(tmp_path / "slurm_adopt"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "slurm_adopt" / "broken.py").write_text("raise ImportError('nope')\n")
    p = subprocess.run([sys.executable, "-I", "-c", SELF_CHECK_BROKEN, str(tmp_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines == ["1", "pam_slurm_adopt self-check FAILED: broken: nope"]


def test_main_dispatches(monkeypatch):
    calls = []
    monkeypatch.setattr(entry, "explain_main", lambda args: calls.append(("explain", args)) or 3)
    monkeypatch.setattr(entry, "self_check_main", lambda: calls.append(("self-check",)) or 4)
    monkeypatch.setattr(entry, "pam_exec_main", lambda args: calls.append(("pam-exec", args)) or 5)
    assert entry.main(["explain", "u", "x=1"]) == 3
    assert entry.main(["self-check"]) == 4
    assert entry.main(["pam-exec", "a=b"]) == 5
    assert entry.main([]) == 2
    assert calls == [("explain", ["u", "x=1"]), ("self-check",), ("pam-exec", ["a=b"])]


@pytest.mark.parametrize("args,rc", [
    ([], C.PAM_IGNORE), (["action_generic_failure=deny"], C.PAM_PERM_DENIED),
    (["action_generic_failure=allow"], C.PAM_SUCCESS),
    (["action_generic_failure=ignore"], C.PAM_IGNORE),
    (["ACTION_GENERIC_FAILURE=DENYx"], C.PAM_PERM_DENIED),
    (["action_generic_failure=deny", "action_generic_failure=allow"], C.PAM_SUCCESS),
    (["action_generic_failure=bogus"], C.PAM_IGNORE),
    (["action_generic_failures=deny"], C.PAM_IGNORE),
    (["action_adopt_failure=deny"], C.PAM_IGNORE),
])
def test_fallback_rc(args, rc):
    """The rc of a failure outside the flow; the shim's rule for a broken
    install is the same."""
    assert entry.fallback_rc(args) == rc
    assert shim._unloadable_rc(args) == rc
