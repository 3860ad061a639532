# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Numbers, names and user-visible messages shared with the C module."""


MODULE_NAME = "pam_slurm_adopt"

# Linux-PAM return codes (security/_pam_types.h).
PAM_SUCCESS = 0
PAM_SERVICE_ERR = 3
PAM_SYSTEM_ERR = 4
PAM_PERM_DENIED = 6
PAM_SESSION_ERR = 14
PAM_IGNORE = 25
PAM_BAD_ITEM = 29

PAM_RC_NAMES = {
    PAM_SUCCESS: "PAM_SUCCESS",
    PAM_SERVICE_ERR: "PAM_SERVICE_ERR",
    PAM_SYSTEM_ERR: "PAM_SYSTEM_ERR",
    PAM_PERM_DENIED: "PAM_PERM_DENIED",
    PAM_SESSION_ERR: "PAM_SESSION_ERR",
    PAM_IGNORE: "PAM_IGNORE",
    PAM_BAD_ITEM: "PAM_BAD_ITEM",
}

# Slurm step ids and sentinel values (slurm/slurm.h, 20.11 and later).
NO_VAL = 0xFFFFFFFE
SLURM_EXTERN_CONT = 0xFFFFFFFC

# slurmstepd requests (src/common/stepd_api.h; stable from 20.11 to 26.05).
REQUEST_STATE = 5
REQUEST_PID_IN_CONTAINER = 8
REQUEST_STEP_LIST_PIDS = 15
REQUEST_STEP_UID = 20
REQUEST_ADD_EXTERN_PID = 22
REQUEST_X11_DISPLAY = 23
REQUEST_GET_NS_FD = 26
REQUEST_GET_NS_FDS = 28

# Slurm protocol versions (major << 8).
PROTOCOL_VERSIONS = {
    "20.11": 0x2400, "21.08": 0x2500, "22.05": 0x2600, "23.02": 0x2700,
    "23.11": 0x2800, "24.05": 0x2900, "24.11": 0x2A00, "25.05": 0x2B00,
    "25.11": 0x2C00, "26.05": 0x2D00,
}
PROTOCOL_22_05 = 0x2600
PROTOCOL_23_02 = 0x2700
PROTOCOL_25_11 = 0x2C00
PROTOCOL_26_05 = 0x2D00
# What we announce to slurmstepd: it only checks the value against its own
# minimum, so the newest version we know is accepted by 22.05 ... 26.05.
CLIENT_PROTOCOL_VERSION = PROTOCOL_26_05

# Slurm RPC message types and plugin ids.
REQUEST_NETWORK_CALLERID = 5035
RESPONSE_NETWORK_CALLERID = 5036
RESPONSE_SLURM_RC = 8001
AUTH_PLUGIN_MUNGE = 101
HASH_PLUGIN_NONE = 1
HASH_PLUGIN_K12 = 2
# Header flags (slurm_protocol_common.h, 23.11+).
SLURM_NO_AUTH_CRED = 0x40
SLURM_PACK_ADDRS = 0x80
# A callerid reply is a 16-byte header, a munge credential of a few hundred
# bytes and a body of about 40 bytes plus the node name: 16 KiB is ten times
# what one can be.
MAX_RPC_REPLY = 16384

# Slurm log levels (src/common/log.h) and their syslog priorities.
LOG_LEVEL_QUIET, LOG_LEVEL_FATAL, LOG_LEVEL_ERROR, LOG_LEVEL_INFO = 0, 1, 2, 3
LOG_LEVEL_VERBOSE, LOG_LEVEL_DEBUG = 4, 5
LOG_LEVEL_DEBUG2, LOG_LEVEL_DEBUG3, LOG_LEVEL_DEBUG4, LOG_LEVEL_DEBUG5 = 6, 7, 8, 9
LOG_LEVEL_END = 10
LOG_LEVEL_NAMES = ("quiet", "fatal", "error", "info", "verbose", "debug",
                   "debug2", "debug3", "debug4", "debug5")
# syslog(3) facility LOG_AUTHPRIV and priorities.
LOG_AUTHPRIV = 10 << 3
SYSLOG_PRIORITY = {LOG_LEVEL_FATAL: 2, LOG_LEVEL_ERROR: 3, LOG_LEVEL_INFO: 6,
                   LOG_LEVEL_VERBOSE: 6}
LOG_PREFIX = {LOG_LEVEL_FATAL: "fatal: ", LOG_LEVEL_ERROR: "error: ",
              LOG_LEVEL_DEBUG: "debug:  ", LOG_LEVEL_DEBUG2: "debug2: ",
              LOG_LEVEL_DEBUG3: "debug3: ", LOG_LEVEL_DEBUG4: "debug4: ",
              LOG_LEVEL_DEBUG5: "debug5: "}

# Time budgets (seconds).  slurmstepd answers locally in microseconds; a
# stepd that does not answer within STEPD_TIMEOUT is stopped or stuck.
STEPD_TIMEOUT = 2.0
MUNGE_TIMEOUT = 3.0
DEFAULT_MESSAGE_TIMEOUT = 10
RPC_TIMEOUT_CAP = 10.0
TOTAL_BUDGET = 20.0
# The last part of the budget is kept for the user's own adoption (connect,
# handshake, add the pid, X11, namespaces: a few stepd round trips); the uid
# queries, the node-name lookup and the callerid RPC may only use the rest.
ADOPT_RESERVE = 8.0
# uid queries run at once, at most this many sockets open together (sshd's
# soft limit on open files is usually 1024).
MAX_PARALLEL_STEPDS = 256
DNS_TIMEOUT = 2.0
SYSLOG_TIMEOUT = 0.5

DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
CONFIGLESS_SLURM_CONF = "/run/slurm/conf/slurm.conf"
DEFAULT_SPOOL_DIR = "/var/spool/slurmd"
DEFAULT_SLURMD_PORT = 6818
DEFAULT_CGROUP_MOUNTPOINT = "/sys/fs/cgroup"

MSG_NO_JOBS = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
MSG_UNKNOWN_SOURCE = "Access denied by pam_slurm_adopt: unable to determine source job"
MSG_ADOPT_FAILED_LEGACY = ("Access denied by pam_slurm_adopt: failed to adopt process into "
                           "cgroup, denying access because action_adopt_failure=deny")
MSG_ADOPT_FAILED_26_05 = "Access denied by pam_slurm_adopt: adoption failure"
MSG_NO_STEP_LIST = "No Slurm jobs found on node."


class AdoptError(Exception):
    """An expected failure with a message for the log."""


class ConfigError(AdoptError):
    """slurm.conf (or cgroup.conf) cannot be used."""


class StepdError(AdoptError):
    """A slurmstepd could not be reached or gave no usable answer."""


class StepdTimeout(StepdError):
    """A slurmstepd accepted the connection but did not answer in time."""


class StepdUntrusted(StepdError):
    """A step socket answered by someone other than root or a Slurm user."""


class RpcError(AdoptError):
    """The callerid RPC failed."""


class MungeError(RpcError):
    """No munge credential: a local problem that every multi-job login meets."""
