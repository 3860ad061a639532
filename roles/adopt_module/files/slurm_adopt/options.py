# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module options, parsed like the C module (_init_opts / _parse_opts)."""

from .constants import (LOG_LEVEL_END, LOG_LEVEL_INFO, LOG_LEVEL_NAMES, PAM_IGNORE,
                        PAM_PERM_DENIED, PAM_SUCCESS)


ACTION_NEWEST, ACTION_ALLOW, ACTION_IGNORE, ACTION_DENY = "newest", "allow", "ignore", "deny"


class Options(object):
    """Module options with the C module's defaults."""

    def __init__(self):
        self.single_job_skip_rpc = True
        self.ignore_root = True
        self.action_no_jobs = ACTION_DENY
        self.action_unknown = ACTION_NEWEST
        self.action_adopt_failure = ACTION_ALLOW
        self.action_generic_failure = ACTION_IGNORE
        self.log_level = LOG_LEVEL_INFO
        self.node_name = None
        self.disable_x11 = False
        self.pam_service = None
        self.join_container = True
        self.problems = []      # the message of each rejected option or value

    def as_dict(self):
        return dict((k, v) for k, v in self.__dict__.items() if k != "problems")


def _prefix(arg, name):
    """Case-insensitive prefix match, as xstrncasecmp(arg, name, len(name))."""
    return arg[:len(name)].lower() == name.lower()


def _digits(text, base):
    """All of text is ASCII digits of base (str.isdigit would take other
    scripts' digits, which strtoul does not)."""
    valid = "0123456789abcdef"[:base]
    return bool(text) and all(char in valid for char in text.lower())


def _strtoul(text):
    """(unsigned int) strtoul(text, &end, 0) when nothing follows the number,
    else None. As in C, an empty text is the number 0, a value above
    ULONG_MAX saturates and the cast to unsigned int keeps the low 32 bits."""
    if text == "":
        return 0
    body = text.lstrip(" \t\n\v\f\r")
    negative = body[:1] == "-"
    if body[:1] in ("+", "-"):
        body = body[1:]
    if body[:2].lower() == "0x":
        if not _digits(body[2:], 16):
            return None
        num = int(body[2:], 16)
    elif body[:1] == "0":
        if not _digits(body, 8):          # "08": strtoul stops at the 8
            return None
        num = int(body, 8)
    elif _digits(body, 10):
        num = int(body, 10)
    else:
        return None
    num = min(num, 0xFFFFFFFFFFFFFFFF)
    if negative:
        num = -num & 0xFFFFFFFFFFFFFFFF
    return num & 0xFFFFFFFF


def parse_log_level(value, problems):
    """strtoul() or a level name; anything else means the maximum (debug5)."""
    num = _strtoul(value)
    if num is not None:
        if num >= LOG_LEVEL_END:
            problems.append("log level %u too high, lowering to max" % num)
            return LOG_LEVEL_END - 1
        return num
    lowered = value.lower()
    if lowered in LOG_LEVEL_NAMES:
        return LOG_LEVEL_NAMES.index(lowered)
    problems.append("unrecognized log level %s, setting to max" % value)
    return LOG_LEVEL_END - 1


def _parse_bool01(opts, arg, name, attr, true_word="1", false_word="0"):
    value = arg[len(name):]
    if _prefix(value, true_word):
        setattr(opts, attr, True)
    elif _prefix(value, false_word):
        setattr(opts, attr, False)
    else:
        default = true_word if getattr(Options(), attr) else false_word
        opts.problems.append("unrecognized %s%s, setting to '%s'" % (name, value, default))


_ACTION_OPTIONS = (
    # option prefix, attribute, accepted words in match order, fallback shown in the message
    ("action_no_jobs=", "action_no_jobs", (ACTION_DENY, ACTION_IGNORE), "deny"),
    ("action_unknown=", "action_unknown", (ACTION_ALLOW, ACTION_NEWEST, ACTION_DENY), "newest"),
    ("action_generic_failure=", "action_generic_failure",
     (ACTION_ALLOW, ACTION_IGNORE, ACTION_DENY), "allow"),
    ("action_adopt_failure=", "action_adopt_failure", (ACTION_ALLOW, ACTION_DENY), "allow"),
)


def parse_options(argv):
    """Parse module arguments like the C module.

    Names and values match case-insensitively by prefix; rejected values
    keep the previous value (the message wording is the C module's, including
    its "setting to 'allow'" for action_generic_failure, which in fact keeps
    the current value). Boolean options accept both forms (=0/=1,
    =true/=false) as Slurm 24.11.2 and later do; on older Slurm the extra
    forms only restate the default, so the outcome is the same.
    """
    opts = Options()
    for arg in argv:
        handled = False
        for name, attr, words, fallback in _ACTION_OPTIONS:
            if _prefix(arg, name):
                value = arg[len(name):]
                for word in words:
                    if _prefix(value, word):
                        setattr(opts, attr, word)
                        break
                else:
                    opts.problems.append("unrecognized %s%s, setting to '%s'"
                                         % (name, value, fallback))
                handled = True
                break
        if handled:
            continue
        if _prefix(arg, "single_job_skip_rpc="):
            _parse_bool01(opts, arg, "single_job_skip_rpc=", "single_job_skip_rpc")
        elif _prefix(arg, "ignore_root="):
            _parse_bool01(opts, arg, "ignore_root=", "ignore_root")
        elif _prefix(arg, "log_level="):
            opts.log_level = parse_log_level(arg[len("log_level="):], opts.problems)
        elif _prefix(arg, "nodename="):
            opts.node_name = arg[len("nodename="):]
        elif _prefix(arg, "disable_x11="):
            _parse_bool01(opts, arg, "disable_x11=", "disable_x11")
        elif _prefix(arg, "service="):
            opts.pam_service = arg[len("service="):]
        elif _prefix(arg, "join_container="):
            _parse_bool01(opts, arg, "join_container=", "join_container", "true", "false")
        else:
            opts.problems.append("ignoring unrecognized option '%s'" % arg)
    return opts


def generic_failure_rc(opts):
    return {ACTION_DENY: PAM_PERM_DENIED, ACTION_ALLOW: PAM_SUCCESS}.get(
        opts.action_generic_failure, PAM_IGNORE)
