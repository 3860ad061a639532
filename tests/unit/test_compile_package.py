# SPDX-License-Identifier: GPL-3.0-or-later
"""roles/adopt_module/files/compile_package.py: byte-compiles what is stale,
reports exactly that, and writes nothing with --check."""

import importlib.util
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "adopt_module", "files",
                      "compile_package.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          check=False)


@pytest.fixture
def package(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("X = 1\n")
    return pkg


def pyc(path):
    return importlib.util.cache_from_source(str(path))


def test_check_reports_and_writes_nothing(package):
    out = run(str(package), "--check")
    assert out.returncode == 0
    assert out.stdout.splitlines() == ["would compile %s" % (package / n) for n in ("__init__.py", "a.py")]
    assert not os.path.exists(pyc(package / "a.py"))


def test_compiles_stale_only_and_is_quiet_when_current(package):
    first = run(str(package))
    assert first.returncode == 0 and len(first.stdout.splitlines()) == 2
    assert oct(os.stat(pyc(package / "a.py")).st_mode & 0o777) == "0o644"
    assert run(str(package)).stdout == ""          # nothing stale: the role reports ok
    (package / "a.py").write_text("X = 22\n")      # size changes: the .pyc is stale
    assert run(str(package)).stdout == "compiled %s\n" % (package / "a.py")


def test_bad_arguments(tmp_path):
    assert run().returncode == 2
    assert run(str(tmp_path / "missing")).returncode == 2
    assert run(str(tmp_path), "--force").returncode == 2
