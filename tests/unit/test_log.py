# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm_adopt/log.py: levels, prefixes, the pam_syslog lines through the
process's own syslog(3), and writes bounded in time (a private /dev/log
stand-in: a Unix datagram socket the test reads)."""

import os
import socket
import time

import pytest

from slurm_adopt import constants as C
from slurm_adopt import log as log_mod
from slurm_adopt.log import Log
from slurm_adopt.stepd import Deadline


@pytest.fixture
def devlog(tmp_path, monkeypatch):
    """A datagram socket standing in for /dev/log."""
    path = str(tmp_path / "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(2)
    monkeypatch.setattr(Log, "dev_log", path)
    yield sink
    sink.close()


def received(sink):
    data = sink.recv(65536).decode()
    return data


def test_levels_prefixes_and_priorities(devlog):
    log = Log(C.LOG_LEVEL_DEBUG2)
    log.error("e")
    log.info("i")
    log.verbose("v")
    log.debug("d")
    log.debug2("d2")
    log.debug3("d3")                     # above the level: not sent
    got = [received(devlog) for _line in range(5)]
    texts = [line.split(": ", 1)[1] for line in got]
    assert texts == ["error: e", "i", "v", "debug:  d", "debug2: d2"]
    assert [int(line[1:line.index(">")]) for line in got] == [
        C.LOG_AUTHPRIV | 3, C.LOG_AUTHPRIV | 6, C.LOG_AUTHPRIV | 6, C.LOG_AUTHPRIV | 7,
        C.LOG_AUTHPRIV | 7]
    assert all(" pam_slurm_adopt[%d]: " % os.getpid() in line for line in got)
    assert [text for _level, text in log.lines] == ["e", "i", "v", "d", "d2", "d3"]
    log.close()


def test_quiet_sends_nothing_but_keeps_the_lines(devlog):
    log = Log(C.LOG_LEVEL_QUIET)
    log.error("e")
    log.log(C.LOG_LEVEL_QUIET, "q")
    with pytest.raises(socket.timeout):
        devlog.settimeout(0.2)
        devlog.recv(100)
    assert log.lines == [(C.LOG_LEVEL_ERROR, "e"), (C.LOG_LEVEL_QUIET, "q")]


def test_pam_syslog_lines_go_through_the_process_syslog():
    sent = []
    echoed = []
    log = Log(C.LOG_LEVEL_QUIET, process_syslog=lambda prio, text: sent.append((prio, text)),
              echo=lambda level, msg: echoed.append((level, msg)))
    log.pam_syslog(6, "Not adopting", "sshd")
    log.pam_syslog(3, "bad option", "login")
    assert sent == [(C.LOG_AUTHPRIV | 6, "pam_slurm_adopt(sshd:account): Not adopting"),
                    (C.LOG_AUTHPRIV | 3, "pam_slurm_adopt(login:account): bad option")]
    assert log.lines == echoed == [(C.LOG_LEVEL_INFO, "Not adopting"),
                                   (C.LOG_LEVEL_ERROR, "bad option")]


def test_pam_syslog_falls_back_to_dev_log(devlog):
    def broken(prio, text):
        raise OSError("no libc")
    log = Log(C.LOG_LEVEL_QUIET, process_syslog=broken)
    log.pam_syslog(3, "x", "sshd")
    line = received(devlog)
    assert line.startswith("<%d>" % (C.LOG_AUTHPRIV | 3))
    assert line.endswith(" pam_slurm_adopt[%d]: pam_slurm_adopt(sshd:account): x" % os.getpid())


def test_no_syslog_for_explain():
    sent = []
    log = Log(to_syslog=False, process_syslog=lambda *a: sent.append(a))
    log.pam_syslog(3, "x")
    log.error("y")
    assert sent == [] and len(log.lines) == 2


@pytest.mark.timeout(20)
def test_a_stuck_syslog_costs_one_timeout_then_nothing(tmp_path, monkeypatch):
    """A /dev/log whose reader is stuck (full buffer): the first blocked write
    waits SYSLOG_TIMEOUT at most, later lines are dropped at once."""
    path = str(tmp_path / "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)                      # never read
    monkeypatch.setattr(Log, "dev_log", path)
    monkeypatch.setattr(log_mod, "SYSLOG_TIMEOUT", 0.3)
    log = Log(C.LOG_LEVEL_INFO)
    start = time.monotonic()
    for i in range(2000):
        log.info("x" * 4000 + str(i))
    assert time.monotonic() - start < 1.5
    assert log._broken
    sink.close()


def test_writes_stop_at_the_deadline(devlog):
    log = Log(C.LOG_LEVEL_INFO)
    log.deadline = Deadline(0)
    log.info("late")
    devlog.settimeout(0.2)
    with pytest.raises(socket.timeout):
        devlog.recv(100)
