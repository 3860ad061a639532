# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm.conf and cgroup.conf: only what the module needs, read as slurmd reads them.

Files are read as bytes and decoded with os.fsdecode (the file-system
encoding with surrogateescape): a byte that is not ASCII, in a comment or a
value, never makes the file unreadable, whatever the locale of sshd (often
none, so ASCII), and a path read from the file names the same bytes again."""

import errno
import os

from .sockets import socket
from .constants import (CONFIGLESS_SLURM_CONF, DEFAULT_CGROUP_MOUNTPOINT, DEFAULT_MESSAGE_TIMEOUT,
                        DEFAULT_SLURM_CONF, DEFAULT_SLURMD_PORT, DEFAULT_SPOOL_DIR, ConfigError)


def expand_hostlist(expr):
    """Expand a Slurm hostlist ("n[01-03,7],login1") into names."""
    names = []
    for part in _split_top_level(expr.strip()):
        if part:
            names.extend(_expand_host(part))
    return names


def _split_top_level(expr):
    parts, depth, current = [], 0, []
    for char in expr:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ConfigError("unbalanced brackets in hostlist '%s'" % expr)
    parts.append("".join(current))
    return parts


def _expand_host(part):
    start = part.find("[")
    if start < 0:
        return [part]
    end = part.find("]", start)
    if end < 0:
        raise ConfigError("unbalanced brackets in hostlist '%s'" % part)
    prefix, ranges, rest = part[:start], part[start + 1:end], part[end + 1:]
    values = []
    for rng in ranges.split(","):
        if "-" in rng:
            low, high = rng.split("-", 1)
            if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
                raise ConfigError("bad range '%s' in hostlist '%s'" % (rng, part))
            width = len(low)
            if int(high) - int(low) > 100000:
                raise ConfigError("range '%s' too large" % rng)
            values.extend("%0*d" % (width, num) for num in range(int(low), int(high) + 1))
        elif rng.isdigit():
            values.append(rng)
        else:
            raise ConfigError("bad range '%s' in hostlist '%s'" % (rng, part))
    return [prefix + value + tail for value in values for tail in _expand_host(rest)]


def _strip_comment(line):
    out = []
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line) and line[i + 1] == "#":
            out.append("#")
            i += 2
            continue
        if char == "#":
            break
        out.append(char)
        i += 1
    return "".join(out)


def _is_key(word):
    return bool(word) and word[0].isalpha() and all(c.isalnum() or c == "_" for c in word)


def parse_pairs(text, where):
    """Split "Key=Value Key2=Value2" (values may be double-quoted)."""
    pairs = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size:
            return pairs
        equal = text.find("=", pos)
        key = text[pos:equal].strip() if equal > 0 else ""
        if not _is_key(key):
            raise ConfigError("%s: cannot parse '%s'" % (where, text[pos:].strip()))
        pos = equal + 1
        while pos < size and text[pos] in " \t":
            pos += 1
        if pos < size and text[pos] == '"':
            close = text.find('"', pos + 1)
            if close < 0:
                raise ConfigError("%s: unterminated quote in '%s'" % (where, text.strip()))
            value, pos = text[pos + 1:close], close + 1
        else:
            stop = pos
            while stop < size and not text[stop].isspace():
                stop += 1
            value, pos = text[pos:stop], stop
        pairs.append((key, value))


class SlurmConfig(object):
    """The parts of slurm.conf and cgroup.conf that pam_slurm_adopt uses."""

    def __init__(self, path):
        self.path = path
        self.files = []
        self.values = {}          # lower-case key -> value (last one wins)
        self.nodes = []           # [(NodeName, NodeHostname)] expanded, in order
        self._node_defaults = {}
        self._cgroup = None       # lower-case key -> value from cgroup.conf, read on first use
        self.cgroup_path = os.path.join(os.path.dirname(path), "cgroup.conf")

    # -- reading ---------------------------------------------------------
    @classmethod
    def load(cls, path, with_cgroup=False):    # pylint: disable=unused-argument
        """slurm.conf and its Includes. cgroup.conf is read only when it is
        needed (the "newest" rule up to 25.11): 26.05 never reads it.
        (with_cgroup is accepted for callers of the earlier API; it changes
        nothing.)"""
        conf = cls(path)
        conf._read_file(path, depth=0)
        return conf

    def _read_file(self, path, depth):
        if depth > 10:
            raise ConfigError("%s: Include nested too deeply" % path)
        raw_lines = read_lines(path)
        self.files.append(path)
        for lineno, line in _logical_lines(raw_lines):
            where = "%s line %d" % (path, lineno)
            line = _strip_comment(line).strip()
            if not line:
                continue
            if line.lower().startswith("include") and (len(line) == 7 or line[7] in " \t"):
                self._include(line[7:].strip(), path, depth, where)
                continue
            pairs = parse_pairs(line, where)
            first_key = pairs[0][0].lower()
            if first_key in ("nodename", "frontendname", "partitionname", "nodeset",
                             "downnodes", "slurmctldhost", "controlmachine"):
                self._record_line(first_key, pairs, where)
                if first_key not in ("slurmctldhost", "controlmachine"):
                    continue
            for key, value in pairs:
                self.values[key.lower()] = value

    def _include(self, target, current, depth, where):
        """An Include line, as Slurm's parser reads it: "%c" is the ClusterName
        defined so far, lower-cased; a relative path is taken from the
        directory of the including file. For an Include inside an included
        file, 24.11+ takes slurm.conf's directory instead: the file is read
        from there when the including file's directory has no such file
        (the Slurm version is not known yet when slurm.conf is read; see
        docs/differences.md). Slurm expands no glob: 22.05 tries to open the
        pattern as a file name and 24.11+ refuses the line, and either way the
        configuration fails to load, so it is a ConfigError here too."""
        if not target:
            raise ConfigError("%s: Include without a file name" % where)
        target = target.split()[0].strip('"')
        while "%c" in target:
            cluster = self.values.get("clustername")
            if not cluster:
                raise ConfigError("%s: Include %s uses %%c but no ClusterName is set before it"
                                  % (where, target))
            target = target.replace("%c", cluster.lower(), 1)
        if not os.path.isabs(target):
            relative = target
            target = os.path.join(os.path.dirname(current), relative)
            if depth > 0 and not os.path.exists(target):
                target = os.path.join(os.path.dirname(self.path), relative)
        if "*" in target:
            raise ConfigError("%s: Include %s: Slurm does not expand glob patterns in Include"
                              % (where, target))
        self._read_file(target, depth + 1)

    def _record_line(self, kind, pairs, where):
        if kind != "nodename":
            return
        attrs = dict((k.lower(), v) for k, v in pairs)
        names = attrs.get("nodename", "")
        if names.upper() == "DEFAULT":
            self._node_defaults.update(attrs)
            return
        if not names:
            raise ConfigError("%s: NodeName without a value" % where)
        node_list = expand_hostlist(names)
        host_expr = attrs.get("nodehostname")
        host_list = expand_hostlist(host_expr) if host_expr else node_list
        if len(host_list) != len(node_list):
            if len(host_list) == 1:
                host_list = host_list * len(node_list)
            else:
                raise ConfigError("%s: NodeHostname count differs from NodeName count" % where)
        self.nodes.extend(zip(node_list, host_list))

    @property
    def cgroup(self):
        """cgroup.conf next to slurm.conf (optional), read on first use."""
        if self._cgroup is None:
            values = {}
            try:
                raw_lines = read_lines(self.cgroup_path)
            except ConfigError as exc:
                if getattr(exc, "errno", None) != errno.ENOENT:
                    raise
                raw_lines = []              # cgroup.conf is optional
            for lineno, line in _logical_lines(raw_lines):
                line = _strip_comment(line).strip()
                if not line:
                    continue
                for key, value in parse_pairs(line, "%s line %d" % (self.cgroup_path, lineno)):
                    values[key.lower()] = value
            self._cgroup = values
        return self._cgroup

    # -- values ----------------------------------------------------------
    def get(self, key, default=None):
        return self.values.get(key.lower(), default)

    def get_int(self, key, default):
        value = self.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError("%s: %s=%s is not a number" % (self.path, key, value))

    @property
    def slurmd_port(self):
        return self.get_int("SlurmdPort", DEFAULT_SLURMD_PORT)

    @property
    def message_timeout(self):
        return self.get_int("MessageTimeout", DEFAULT_MESSAGE_TIMEOUT)

    @property
    def munge_socket(self):
        for item in (self.get("AuthInfo") or "").split(","):
            key, _sep, value = item.strip().partition("=")
            if key.lower() == "socket" and value:
                return value
        return None

    def comm_param(self, name):
        return name.lower() in (self.get("CommunicationParameters") or "").lower()

    @property
    def auth_type(self):
        return (self.get("AuthType") or "auth/munge").lower()

    @property
    def tls_type(self):
        return (self.get("TLSType") or "tls/none").lower()

    def slurm_users(self):
        """Names of SlurmUser and SlurmdUser (root by default)."""
        return [self.get("SlurmUser") or "root", self.get("SlurmdUser") or "root"]

    def cgroup_flag(self, key):
        return (self.cgroup.get(key.lower(), "no") or "no").lower() in ("yes", "true", "1")

    @property
    def cgroup_mountpoint(self):
        return self.cgroup.get("cgroupmountpoint") or DEFAULT_CGROUP_MOUNTPOINT

    def nodename_for_host(self, host):
        """slurm_conf_get_nodename(): the NodeName whose NodeHostname is host."""
        for name, hostname in self.nodes:
            if hostname == host:
                return name
        return None

    def hostname_for_node(self, node):
        for name, hostname in self.nodes:
            if name == node:
                return hostname
        return None

    def spool_dir(self, node_name):
        """SlurmdSpoolDir with %n and %h expanded for node_name."""
        path = self.get("SlurmdSpoolDir") or DEFAULT_SPOOL_DIR
        if "%h" in path:
            path = path.replace("%h", self.hostname_for_node(node_name) or node_name)
        return path.replace("%n", node_name)


def read_lines(path):
    """The lines of a config file, decoded with os.fsdecode (never the
    locale's encoding). ConfigError (with .errno) if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        error = ConfigError("cannot read %s: %s" % (path, exc.strerror or exc))
        error.errno = exc.errno
        raise error
    return os.fsdecode(data).splitlines()


def _logical_lines(raw_lines):
    """Join lines ending in a backslash; yield (first line number, text)."""
    buf, first = [], None
    for number, line in enumerate(raw_lines, 1):
        if first is None:
            first = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        yield first, "".join(buf)
        buf, first = [], None
    if buf:
        yield first, "".join(buf)


def find_slurm_conf(environ=None):
    """Where the config comes from, in Slurm's order: $SLURM_CONF, the
    default file, then the configless cache written by slurmd."""
    environ = os.environ if environ is None else environ
    env_path = environ.get("SLURM_CONF")
    if env_path:
        return env_path
    if os.path.exists(DEFAULT_SLURM_CONF):
        return DEFAULT_SLURM_CONF
    if os.path.exists(CONFIGLESS_SLURM_CONF):
        return CONFIGLESS_SLURM_CONF
    raise ConfigError("no slurm.conf: SLURM_CONF is unset, %s and %s do not exist"
                      % (DEFAULT_SLURM_CONF, CONFIGLESS_SLURM_CONF))


def legacy_nodename(conf, resolve=None):
    """_guess_nodename() as in 22.05: the short host name as a NodeHostname
    (the full name too), its address aliases (resolve(name) -> canonical
    names, a DNS lookup bounded by the caller), then the NodeName of
    localhost. None when nothing matches."""
    full = socket.gethostname()
    short = full.split(".", 1)[0]
    for candidate in (short, full):
        name = conf.nodename_for_host(candidate)
        if name:
            return name
    for canon in (resolve or canonical_names)(full):
        name = conf.nodename_for_host(canon) or conf.nodename_for_host(canon.split(".")[0])
        if name:
            return name
    return conf.nodename_for_host("localhost")


def canonical_names(host):
    """The canonical names of host (getaddrinfo AI_CANONNAME); [] on error."""
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    except (socket.gaierror, OSError, UnicodeError):
        return []
    return [info[3] for info in infos if info[3]]


def guess_nodename(conf, environ=None, resolve=None):
    """The 23.11+ guess: $SLURMD_NODENAME, the 22.05 guess, then the raw host
    name (dynamic and cloud nodes). The flow picks the parts that the
    node's Slurm version has (see Adopter.node_name)."""
    environ = os.environ if environ is None else environ
    return (environ.get("SLURMD_NODENAME") or legacy_nodename(conf, resolve)
            or socket.gethostname())
