# SPDX-License-Identifier: GPL-3.0-or-later
"""Option parsing must match the C module's _parse_opts (22.05 ... 26.05)."""

import pytest

from slurm_adopt import constants as C
from slurm_adopt.options import generic_failure_rc, parse_options


def test_defaults_are_the_c_modules():
    opts = parse_options([])
    assert (opts.action_no_jobs, opts.action_unknown, opts.action_adopt_failure,
            opts.action_generic_failure) == ("deny", "newest", "allow", "ignore")
    assert opts.log_level == C.LOG_LEVEL_INFO
    assert opts.single_job_skip_rpc and opts.ignore_root and opts.join_container
    assert not opts.disable_x11
    assert opts.node_name is None and opts.pam_service is None
    assert opts.problems == []


@pytest.mark.parametrize("arg,attr,value", [
    ("action_no_jobs=ignore", "action_no_jobs", "ignore"),
    ("ACTION_NO_JOBS=Ignore", "action_no_jobs", "ignore"),       # names and values: any case
    ("action_unknown=denyxyz", "action_unknown", "deny"),        # values match by prefix
    ("action_unknown=allow", "action_unknown", "allow"),
    ("action_adopt_failure=deny", "action_adopt_failure", "deny"),
    ("action_generic_failure=deny", "action_generic_failure", "deny"),
    ("action_generic_failure=allow", "action_generic_failure", "allow"),
    ("nodename=node07", "node_name", "node07"),
    ("service=*", "pam_service", "*"),
    ("disable_x11=1", "disable_x11", True),
    ("join_container=false", "join_container", False),
    ("join_container=true", "join_container", True),
    ("single_job_skip_rpc=0", "single_job_skip_rpc", False),
    ("ignore_root=0", "ignore_root", False),
    ("log_level=debug2", "log_level", C.LOG_LEVEL_DEBUG2),
    ("log_level=QUIET", "log_level", C.LOG_LEVEL_QUIET),
    ("log_level=5", "log_level", 5),
    ("log_level=0x4", "log_level", 4),
])
def test_each_option(arg, attr, value):
    opts = parse_options([arg])
    assert getattr(opts, attr) == value
    assert opts.problems == []


@pytest.mark.parametrize("arg,attr,kept,message", [
    ("action_no_jobs=allow", "action_no_jobs", "deny",
     "unrecognized action_no_jobs=allow, setting to 'deny'"),
    ("action_unknown=maybe", "action_unknown", "newest",
     "unrecognized action_unknown=maybe, setting to 'newest'"),
    # The C module says 'allow' here but keeps the current value (ignore).
    ("action_generic_failure=bogus", "action_generic_failure", "ignore",
     "unrecognized action_generic_failure=bogus, setting to 'allow'"),
    ("action_adopt_failure=ignore", "action_adopt_failure", "allow",
     "unrecognized action_adopt_failure=ignore, setting to 'allow'"),
    ("disable_x11=yes", "disable_x11", False, "unrecognized disable_x11=yes, setting to '0'"),
    ("join_container=no", "join_container", True,
     "unrecognized join_container=no, setting to 'true'"),
    # the 24.11.2+ wording (strings of the sid and trixie labs' pam_slurm_adopt.so)
    ("single_job_skip_rpc=yes", "single_job_skip_rpc", True,
     "unrecognized single_job_skip_rpc=yes, setting to '1'"),
    ("ignore_root=no", "ignore_root", True, "unrecognized ignore_root=no, setting to '1'"),
    # the message names the option as the C module spells it, whatever the argument's case
    ("Ignore_Root=", "ignore_root", True, "unrecognized ignore_root=, setting to '1'"),
    ("SINGLE_JOB_SKIP_RPC=2", "single_job_skip_rpc", True,
     "unrecognized single_job_skip_rpc=2, setting to '1'"),
])
def test_bad_values_keep_the_previous_value_and_are_reported(arg, attr, kept, message):
    opts = parse_options([arg])
    assert getattr(opts, attr) == kept
    assert opts.problems == [message]


def test_bad_value_keeps_an_earlier_good_one():
    opts = parse_options(["action_no_jobs=ignore", "action_no_jobs=bogus"])
    assert opts.action_no_jobs == "ignore"


def test_unknown_option_is_reported_and_ignored():
    opts = parse_options(["frobnicate=1", "action_no_jobs=ignore"])
    assert opts.action_no_jobs == "ignore"
    assert opts.problems == ["ignoring unrecognized option 'frobnicate=1'"]


@pytest.mark.parametrize("value,level,problem", [
    ("verbose", C.LOG_LEVEL_VERBOSE, None),
    ("12", C.LOG_LEVEL_DEBUG5, "log level 12 too high, lowering to max"),
    ("loud", C.LOG_LEVEL_DEBUG5, "unrecognized log level loud, setting to max"),
    ("-1", C.LOG_LEVEL_DEBUG5, "log level 4294967295 too high, lowering to max"),
    # item 11: strtoul("") is 0 with nothing left over, so a number: quiet
    ("", C.LOG_LEVEL_QUIET, None),
    # (unsigned int) of 2^32 + 1 is 1, checked after the cast
    ("4294967297", C.LOG_LEVEL_FATAL, None),
    ("18446744073709551617", C.LOG_LEVEL_DEBUG5, "log level 4294967295 too high, lowering to max"),
    ("\uff11", C.LOG_LEVEL_DEBUG5, "unrecognized log level \uff11, setting to max"),
    ("0x", C.LOG_LEVEL_DEBUG5, "unrecognized log level 0x, setting to max"),
    (" 3", C.LOG_LEVEL_INFO, None),
    ("3 ", C.LOG_LEVEL_DEBUG5, "unrecognized log level 3 , setting to max"),
    ("017", C.LOG_LEVEL_DEBUG5, "log level 15 too high, lowering to max"),
])
def test_log_level_edges(value, level, problem):
    opts = parse_options(["log_level=" + value])
    assert opts.log_level == level
    assert opts.problems == ([problem] if problem else [])


@pytest.mark.parametrize("action,rc", [("deny", C.PAM_PERM_DENIED), ("allow", C.PAM_SUCCESS),
                                       ("ignore", C.PAM_IGNORE)])
def test_generic_failure_rc(action, rc):
    assert generic_failure_rc(parse_options(["action_generic_failure=" + action])) == rc


@pytest.mark.parametrize("value,level", [
    ("+5", 5), ("-0", 0), ("0X7", 7), ("0x07", 7), ("007", 7), ("0", 0),
    ("08", C.LOG_LEVEL_DEBUG5),            # strtoul(base 0) reads octal and stops at the 8
    ("0x", C.LOG_LEVEL_DEBUG5), ("0xg", C.LOG_LEVEL_DEBUG5), ("5x", C.LOG_LEVEL_DEBUG5),
    ("\t6", 6), ("Debug3", C.LOG_LEVEL_DEBUG3), ("FATAL", C.LOG_LEVEL_FATAL),
    ("X5", C.LOG_LEVEL_DEBUG5), ("\u00a05", C.LOG_LEVEL_DEBUG5),   # only C's isspace is skipped
    ("1a", C.LOG_LEVEL_DEBUG5), ("0xA", C.LOG_LEVEL_DEBUG5), ("0x9", 9), ("0xf", C.LOG_LEVEL_DEBUG5),
    ("error", C.LOG_LEVEL_ERROR), ("info", C.LOG_LEVEL_INFO), ("debug", C.LOG_LEVEL_DEBUG),
    ("debug4", C.LOG_LEVEL_DEBUG4), ("9", C.LOG_LEVEL_DEBUG5), ("10", C.LOG_LEVEL_DEBUG5),
])
def test_log_level_numbers_as_strtoul_reads_them(value, level):
    assert parse_options(["log_level=" + value]).log_level == level


def test_log_level_problems_name_the_value():
    assert parse_options(["log_level=10"]).problems == ["log level 10 too high, lowering to max"]
    assert parse_options(["log_level=08"]).problems == ["unrecognized log level 08, setting to max"]
    assert parse_options(["log_level=9"]).problems == []


def test_as_dict_has_every_option_but_the_problems():
    opts = parse_options(["frobnicate", "nodename=n1"])
    d = opts.as_dict()
    assert "problems" not in d and d["node_name"] == "n1"
    assert set(d) == {"single_job_skip_rpc", "ignore_root", "action_no_jobs", "action_unknown",
                      "action_adopt_failure", "action_generic_failure", "log_level", "node_name",
                      "disable_x11", "pam_service", "join_container"}


def test_an_action_option_does_not_end_the_parsing():
    """Every argument is parsed, whatever comes before it."""
    opts = parse_options(["action_no_jobs=ignore", "nodename=n9", "action_unknown=deny",
                          "log_level=debug"])
    assert (opts.action_no_jobs, opts.node_name, opts.action_unknown, opts.log_level) == (
        "ignore", "n9", "deny", C.LOG_LEVEL_DEBUG)


@pytest.mark.parametrize("value,problem", [
    # strtoul reads hex digits in either case; 0xa is the number 10, not a bad name
    ("0xa", "log level 10 too high, lowering to max"),
    ("0XA", "log level 10 too high, lowering to max"),
    ("0xFf", "log level 255 too high, lowering to max"),
    ("0x10", "log level 16 too high, lowering to max"),
    ("0x0b", "log level 11 too high, lowering to max"),
])
def test_hex_log_levels_are_numbers(value, problem):
    opts = parse_options(["log_level=" + value])
    assert opts.log_level == C.LOG_LEVEL_DEBUG5
    assert opts.problems == [problem]
