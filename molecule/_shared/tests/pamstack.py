# SPDX-License-Identifier: GPL-3.0-or-later
"""Expand a PAM service into its effective stacks, as Linux-PAM reads them.

Independent of the collection's own PAM code on purpose: the molecule tests
check the roles' result with a second implementation.  Handles comments,
backslash continuations, bracketed controls with spaces, the leading "-" of a
type, "TYPE include FILE", "TYPE substack FILE" and Debian's "@include FILE".
Files are read through a callable so the same code works on testinfra hosts.
"""

import os
import re

TYPES = ("auth", "account", "password", "session")
JUMP = re.compile(r"(?:^|\s)(\w+)=(\d+)")


class Rule:
    """One effective rule: where it came from and what it says."""

    def __init__(self, ptype, control, module, args, source, lineno, dash):
        self.ptype = ptype
        self.control = control
        self.module = module
        self.args = args
        self.source = source
        self.lineno = lineno
        self.dash = dash
        self.in_substack = False

    @property
    def module_name(self):
        """Basename of the module path (pam_unix.so)."""
        return os.path.basename(self.module)

    def mentions(self, needle):
        """True if the module or one of its arguments contains needle."""
        return needle in self.module or any(needle in a for a in self.args)

    def short_circuits(self):
        """True if success of this rule can end the stack (sufficient, done)."""
        if self.control == "sufficient":
            return True
        if self.control.startswith("["):
            actions = dict(
                kv.split("=", 1) for kv in self.control.strip("[]").split() if "=" in kv
            )
            return actions.get("success") == "done" or actions.get("ok") == "done"
        return False

    def jump(self):
        """Largest success jump (success=N / ok=N), 0 when none."""
        if not self.control.startswith("["):
            return 0
        best = 0
        for key, num in JUMP.findall(self.control.strip("[]")):
            if key in ("success", "ok"):
                best = max(best, int(num))
        return best

    def __repr__(self):
        return "%s%s %s %s %s  (%s:%d)" % (
            "-" if self.dash else "",
            self.ptype,
            self.control,
            self.module,
            " ".join(self.args),
            self.source,
            self.lineno,
        )


def strip_comment(line):
    """The line without its comment; a '#' inside [...] is not a comment."""
    depth = 0
    for i, char in enumerate(line):
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif char == "#" and depth == 0:
            return line[:i]
    return line


def logical_lines(text):
    """Yield (lineno, line) with comments removed and continuations joined."""
    buf = ""
    start = 0
    for num, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw).rstrip()
        if not buf:
            start = num
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def split_rule(line):
    """Split a rule into [type, control, module, args...], keeping [..] whole."""
    fields = []
    i = 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "[":
            end = line.find("]", i)
            end = len(line) if end < 0 else end + 1
        else:
            end = i
            while end < len(line) and not line[end].isspace():
                if line[end] == "[":
                    close = line.find("]", end)
                    end = len(line) if close < 0 else close + 1
                    continue
                end += 1
        fields.append(line[i:end])
        i = end
    return fields


class PamTree:
    """A /etc/pam.d tree read through read(path) -> str or None."""

    def __init__(self, read, pam_dir="/etc/pam.d"):
        self.read = read
        self.pam_dir = pam_dir
        self.visited = set()

    def path(self, name):
        """Absolute path of an included name."""
        return name if name.startswith("/") else os.path.join(self.pam_dir, name)

    def expand(self, name, ptype, depth=0, in_substack=False):
        """Effective rules of type ptype of file name (includes expanded).
        Rules that come from a substack carry in_substack=True: libpam runs a
        substack as one rule, so their sufficient/done/jumps end only the
        substack, never the stack that calls it."""
        if depth > 20:
            raise ValueError("include loop at %s" % name)
        path = self.path(name)
        text = self.read(path)
        if text is None:
            raise FileNotFoundError(path)
        self.visited.add(path)
        rules = []
        for lineno, line in logical_lines(text):
            fields = split_rule(line)
            if fields[0] == "@include":
                rules.extend(self.expand(fields[1], ptype, depth + 1, in_substack))
                continue
            if len(fields) < 3:
                continue
            dash = fields[0].startswith("-")
            rtype = fields[0].lstrip("-").lower()
            if rtype != ptype:
                continue
            control = fields[1]
            if control in ("include", "substack"):
                rules.extend(self.expand(fields[2], ptype, depth + 1,
                                         in_substack or control == "substack"))
                continue
            rule = Rule(rtype, control, fields[2], fields[3:], path, lineno, dash)
            rule.in_substack = in_substack
            rules.append(rule)
        return rules

    def reachable(self, service):
        """Every file reachable from service through any type's includes."""
        self.visited = set()
        stacks = {ptype: self.expand(service, ptype) for ptype in TYPES}
        return set(self.visited), stacks
