# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A slurm.conf-format editor that keeps everything it does not change.

The file is read the way Slurm's parser reads it (src/common/parse_config.c):

* ``#`` starts a comment unless it is escaped (``\\#``); comments are stripped
  from every physical line *before* continuations are joined;
* a physical line whose code part ends in an odd number of backslashes
  (optionally followed by blanks) continues on the next line;
* ``Include <file>`` (case-insensitive) reads another file in place; a relative
  name is looked up in the directory of the including file (22.05; 24.11 and
  later use slurm.conf's directory, the same for Includes in slurm.conf
  itself), ``%c`` is replaced by the lower-cased ClusterName.  Glob patterns
  are expanded (sorted) here, with a warning: Slurm itself does not expand
  them;
* every other line is a list of ``Key=Value`` pairs; values are unquoted
  without blanks, or double-quoted; keys are case-insensitive;
* ``NodeName``, ``PartitionName``, ``FrontendName``, ``NodeSet`` and
  ``DownNodes`` lines describe records, not global settings: they are never
  searched or edited.

Edits touch only the value (or the pair) concerned, in the physical line where
it was found, in whichever file (main or included) holds the definition that
Slurm uses (the last one).  Comments, blank lines, order, the spelling of keys
and the rest of each line are left as they were.  New keys are appended to the
main file.  Nothing here writes files: callers take :meth:`SlurmConf.changed`
and write it (atomically) themselves.

Only the Python standard library is used, and the code runs on Python 3.6+.
"""

import glob
import os
import re

RECORD_KEYS = frozenset(("nodename", "partitionname", "frontendname", "nodeset", "downnodes"))
MAX_INCLUDE_DEPTH = 10
KEY_RE = re.compile(r"[A-Za-z0-9_.]+")


class SlurmConfError(Exception):
    """A file cannot be read, parsed or edited safely."""


# --------------------------------------------------------------------------
# low-level scanning


def code_part(line):
    """The part of a physical line before an unescaped ``#``."""
    backslashes = 0
    for index, char in enumerate(line):
        if char == "#" and backslashes % 2 == 0:
            return line[:index]
        if char == "\\":
            backslashes += 1
        else:
            backslashes = 0
    return line


def split_continuation(code):
    """(code without the continuation backslash, True) or (code, False)."""
    end = len(code)
    while end > 0 and code[end - 1] in " \t\r\f\v":
        end -= 1
    count = 0
    while end - count > 0 and code[end - count - 1] == "\\":
        count += 1
    if count % 2 == 1:
        return code[:end - 1], True
    return code, False


def unescape(text):
    """Drop Slurm's escape backslashes (``\\#`` -> ``#``, ``\\\\`` -> ``\\``)."""
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


class Pair(object):
    """One ``Key=Value`` of a logical line, with its position in that line."""

    __slots__ = ("key", "op", "raw_value", "quoted", "start", "value_start", "end")

    def __init__(self, key, op, raw_value, quoted, start, value_start, end):
        self.key = key                  # as spelled in the file
        self.op = op                    # "" or one of + - * / (Key+=Value)
        self.raw_value = raw_value      # as in the file, without the quotes
        self.quoted = quoted
        self.start = start              # offset of the key in the logical text
        self.value_start = value_start  # offset of the value (incl. a quote)
        self.end = end                  # offset just after the value

    @property
    def value(self):
        return self.raw_value if self.quoted else unescape(self.raw_value)

    def __repr__(self):
        return "Pair(%s%s=%r)" % (self.key, self.op, self.raw_value)


def scan_pairs(text):
    """Parse a logical line (comments already removed) into pairs.

    Returns None when the text is not a sequence of Key=Value pairs.
    """
    pairs = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos].isspace():
            pos += 1
        if pos >= size:
            return pairs
        match = KEY_RE.match(text, pos)
        if not match:
            return None
        start, pos = pos, match.end()
        key = match.group(0)
        while pos < size and text[pos] in " \t":
            pos += 1
        op = ""
        if pos < size and text[pos] in "-*+/" and pos + 1 < size and text[pos + 1] == "=":
            op = text[pos]
            pos += 1
        if pos >= size or text[pos] != "=":
            return None
        pos += 1
        while pos < size and text[pos] in " \t":
            pos += 1
        value_start = pos
        if pos < size and text[pos] == '"':
            close = text.find('"', pos + 1)
            if close < 0:
                return None
            raw, quoted, pos = text[pos + 1:close], True, close + 1
        else:
            while pos < size and not text[pos].isspace():
                pos += 1
            raw, quoted = text[value_start:pos], False
            if not raw:
                return None
        if pos < size and not text[pos].isspace():
            return None
        pairs.append(Pair(key, op, raw, quoted, start, value_start, pos))


def format_value(value):
    """Render a value for slurm.conf: quoted when it holds blanks or ``#``."""
    value = "%s" % (value,)
    if '"' in value or "\n" in value or "\r" in value:
        raise SlurmConfError("value %r contains a double quote or a newline" % value)
    if value == "" or any(char.isspace() or char == "#" for char in value):
        return '"%s"' % value
    return value


def split_items(value):
    """A comma-separated list value as a list of non-empty stripped items."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def same_item(first, second):
    """Case-insensitive list-item equality; a missing ``type/`` prefix
    matches (``cgroup`` == ``task/cgroup``, as Slurm's TaskPlugin allows)."""
    first, second = first.strip().lower(), second.strip().lower()
    if first == second:
        return True
    if "/" in first and "/" not in second:
        return first.rsplit("/", 1)[1] == second
    if "/" in second and "/" not in first:
        return second.rsplit("/", 1)[1] == first
    return False


def has_item(items, wanted):
    return any(same_item(item, wanted) for item in items)


# --------------------------------------------------------------------------
# files and logical lines


class Entry(object):
    """A logical line: physical lines ``first`` .. ``first + count - 1``."""

    __slots__ = ("first", "count", "text", "segments", "kind", "pairs", "include")

    def __init__(self, first, count, text, segments):
        self.first = first
        self.count = count
        self.text = text
        self.segments = segments    # [(physical index, offset in text, length)]
        self.kind = "blank"
        self.pairs = []
        self.include = None

    def locate(self, start, end):
        """Physical line index and in-line offsets of text[start:end], or
        None when the span crosses a continuation."""
        for index, offset, length in self.segments:
            if offset <= start and end <= offset + length:
                return index, start - offset, end - offset
        return None


class ConfFile(object):
    """One file: its physical lines and their parse."""

    def __init__(self, path, text):
        self.path = path
        self.original = text
        self.lines = text.split("\n")
        # "a\nb\n" -> ["a", "b", ""]: the last element is what follows the
        # last newline (empty for a file that ends with one).
        self.entries = []
        self.parse()

    @classmethod
    def read(cls, path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            raise SlurmConfError("cannot read %s: %s" % (path, exc.strerror or exc))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        return cls(path, text)

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def changed(self):
        return self.text != self.original

    def _physical_count(self):
        if self.lines and self.lines[-1] == "":
            return len(self.lines) - 1
        return len(self.lines)

    def parse(self):
        entries = []
        total = self._physical_count()
        index = 0
        while index < total:
            first = index
            text, segments = "", []
            while True:
                line = self.lines[index]
                code, more = split_continuation(code_part(line.rstrip("\r")))
                segments.append((index, len(text), len(code)))
                text += code
                index += 1
                if not more or index >= total:
                    break
            entry = Entry(first, index - first, text, segments)
            self._classify(entry)
            entries.append(entry)
        self.entries = entries

    def _classify(self, entry):
        stripped = entry.text.strip()
        if not stripped:
            has_comment = any(self.lines[i].strip() for i in range(entry.first, entry.first + entry.count))
            entry.kind = "comment" if has_comment else "blank"
            return
        head = stripped[:7]
        if head.lower() == "include" and (len(stripped) == 7 or stripped[7].isspace()):
            target = stripped[7:].strip().split()
            entry.kind = "include"
            entry.include = target[0] if target else ""
            return
        pairs = scan_pairs(entry.text)
        if not pairs:
            entry.kind = "opaque"
            return
        entry.pairs = pairs
        entry.kind = "record" if pairs[0].key.lower() in RECORD_KEYS else "pairs"

    # -- edits of physical lines ------------------------------------------
    def replace_span(self, entry, start, end, new_text):
        """Replace entry.text[start:end] by new_text in the physical lines."""
        where = entry.locate(start, end)
        if where is not None:
            index, begin, stop = where
            line = self.lines[index]
            self.lines[index] = line[:begin] + new_text + line[stop:]
        else:
            # The span crosses a continuation: rewrite the logical line as one.
            joined = entry.text[:start] + new_text + entry.text[end:]
            self.lines[entry.first:entry.first + entry.count] = [joined.rstrip()]
        self.parse()

    def delete_entry(self, entry):
        del self.lines[entry.first:entry.first + entry.count]
        self.parse()

    def append_line(self, line):
        if self.lines and self.lines[-1] == "":
            self.lines[-1:] = [line, ""]
        elif self.lines == [""] or not self.lines:
            self.lines = [line, ""]
        else:
            self.lines.extend([line, ""])
        self.parse()


# --------------------------------------------------------------------------
# the whole configuration (main file + includes)


class Definition(object):
    """Where a key is defined: file, entry and pair."""

    __slots__ = ("conf_file", "entry", "pair")

    def __init__(self, conf_file, entry, pair):
        self.conf_file = conf_file
        self.entry = entry
        self.pair = pair


class SlurmConf(object):
    """slurm.conf with its Include files, editable in place.

    ``files`` maps each path read (main file first) to its :class:`ConfFile`.
    """

    def __init__(self, path, follow_includes=True):
        self.path = path
        self.follow_includes = follow_includes
        self.files = {}
        self.order = []         # paths in the order first read
        self.warnings = []
        self.reload(from_disk=True)

    # -- reading ----------------------------------------------------------
    def reload(self, from_disk=False):
        """Re-walk the Include tree (from disk, or from the edited texts)."""
        if from_disk:
            self.files = {}
        self.order = []
        self._walk(self.path, 0, {"clustername": None}, [])

    def _file(self, path):
        if path not in self.files:
            self.files[path] = ConfFile.read(path)
        return self.files[path]

    def _walk(self, path, depth, state, stack):
        if depth > MAX_INCLUDE_DEPTH:
            raise SlurmConfError("%s: Include nested more than %d deep" % (path, MAX_INCLUDE_DEPTH))
        real = os.path.realpath(path)
        if real in stack:
            raise SlurmConfError("%s: Include loop" % path)
        conf_file = self._file(path)
        if path not in self.order:
            self.order.append(path)
        for entry in conf_file.entries:
            if entry.kind == "pairs":
                for pair in entry.pairs:
                    if pair.key.lower() == "clustername":
                        state["clustername"] = pair.value
            elif entry.kind == "include" and self.follow_includes:
                for target in self._include_targets(entry.include, path, state):
                    self._walk(target, depth + 1, state, stack + [real])

    def _include_targets(self, name, including, state):
        if not name:
            raise SlurmConfError("%s: Include without a file name" % including)
        name = name.strip('"')
        if "%c" in name:
            if not state["clustername"]:
                raise SlurmConfError("%s: Include %s uses %%c before ClusterName is set" % (including, name))
            name = name.replace("%c", state["clustername"].lower())
        if not os.path.isabs(name):
            name = os.path.join(os.path.dirname(including), name)
        if any(char in name for char in "*?["):
            self.warnings.append(
                "%s: Include %s is a glob pattern; it is followed here, but Slurm itself (22.05 to 26.05) "
                "does not expand globs in Include (the Include fails and the daemons stop with \"Unable to "
                "process configuration file\"), so fix the Include before slurmd reads this file" % (including, name))
            matches = sorted(glob.glob(name))
            if not matches:
                self.warnings.append("%s: Include %s matches no file" % (including, name))
            return matches
        if not os.path.exists(name):
            raise SlurmConfError("%s: included file %s does not exist" % (including, name))
        return [name]

    # -- queries ------------------------------------------------------------
    def definitions(self, key):
        """Every global definition of key, in the order Slurm reads them."""
        found = []
        self._collect(self.path, key.lower(), found, 0, {"clustername": None}, set())
        return found

    def _collect(self, path, key, found, depth, state, seen):
        conf_file = self.files[path]
        if depth > MAX_INCLUDE_DEPTH:
            return
        for entry in conf_file.entries:
            if entry.kind == "pairs":
                for pair in entry.pairs:
                    if pair.key.lower() == "clustername":
                        state["clustername"] = pair.value
                    if pair.key.lower() == key:
                        found.append(Definition(conf_file, entry, pair))
            elif entry.kind == "include" and self.follow_includes:
                for target in self._include_targets(entry.include, path, state):
                    if target in self.files:
                        self._collect(target, key, found, depth + 1, state, seen)

    def effective(self, key):
        """The Definition Slurm uses (the last one), or None."""
        found = self.definitions(key)
        return found[-1] if found else None

    def get(self, key, default=None):
        definition = self.effective(key)
        return definition.pair.value if definition else default

    @property
    def main(self):
        return self.files[self.path]

    def changed(self):
        """The ConfFile objects whose text differs from what was read."""
        return [self.files[path] for path in self.order if self.files[path].changed]

    # -- edits ----------------------------------------------------------------
    @staticmethod
    def _check_key(key):
        if not KEY_RE.match(key) or KEY_RE.match(key).end() != len(key):
            raise SlurmConfError("%r is not a slurm.conf key" % key)
        if key.lower() in RECORD_KEYS or key.lower() == "include":
            raise SlurmConfError("%s lines are not edited by this tool" % key)

    def _set_value(self, definition, value):
        pair = definition.pair
        if pair.op:
            raise SlurmConfError("%s: %s%s= (an operator assignment) is not edited"
                                 % (definition.conf_file.path, pair.key, pair.op))
        text = format_value(value)
        if pair.quoted and not text.startswith('"'):
            text = '"%s"' % text
        definition.conf_file.replace_span(definition.entry, pair.value_start, pair.end, text)

    def _result(self, key, before, after, definition, action):
        path = definition.conf_file.path if definition else self.path
        if len(self.definitions(key)) > 1:
            self.warnings.append("%s is defined %d times; the last definition (in %s) was used"
                                 % (key, len(self.definitions(key)), path))
        return {"before": before, "after": after, "file": path, "action": action}

    def set(self, key, value):
        """Make key=value effective; returns a result dict."""
        self._check_key(key)
        value = "%s" % (value,)
        definition = self.effective(key)
        if definition is None:
            self.main.append_line("%s=%s" % (key, format_value(value)))
            self.reload()
            return self._result(key, None, value, None, "added")
        before = definition.pair.value
        if before == value:
            return self._result(key, before, value, definition, "unchanged")
        self._set_value(definition, value)
        self.reload()
        return self._result(key, before, value, definition, "changed")

    def merge(self, key, items):
        """Ensure every item is in key's comma-separated list (no duplicates,
        case-insensitive, existing items and order kept)."""
        self._check_key(key)
        definition = self.effective(key)
        before = definition.pair.value if definition else None
        current = split_items(before)
        missing = []
        for item in items:
            item = ("%s" % (item,)).strip()
            if not item or "," in item:
                raise SlurmConfError("%s: bad list item %r" % (key, item))
            if not has_item(current + missing, item):
                missing.append(item)
        if not missing:
            return self._result(key, before, before, definition, "unchanged")
        if definition is None:
            after = ",".join(missing)
            self.main.append_line("%s=%s" % (key, format_value(after)))
            self.reload()
            return self._result(key, None, after, None, "added")
        base = before.rstrip().rstrip(",")
        after = base + "," + ",".join(missing) if base else ",".join(missing)
        self._set_value(definition, after)
        self.reload()
        return self._result(key, before, after, definition, "changed")

    def remove_items(self, key, items):
        """Remove items (case-insensitive) from key's list; drop the key
        when nothing is left."""
        self._check_key(key)
        definition = self.effective(key)
        if definition is None:
            return self._result(key, None, None, None, "unchanged")
        before = definition.pair.value
        kept = [item for item in split_items(before) if not has_item(items, item)]
        if kept == split_items(before):
            return self._result(key, before, before, definition, "unchanged")
        if not kept:
            return self.remove(key)
        after = ",".join(kept)
        self._set_value(definition, after)
        self.reload()
        return self._result(key, before, after, definition, "changed")

    def remove(self, key):
        """Remove every definition of key (the whole line when it holds
        nothing else)."""
        self._check_key(key)
        found = self.definitions(key)
        if not found:
            return self._result(key, None, None, None, "unchanged")
        before = found[-1].pair.value
        path = found[-1].conf_file.path
        while found:
            definition = found[-1]
            entry, pair = definition.entry, definition.pair
            if len(entry.pairs) == 1:
                definition.conf_file.delete_entry(entry)
            else:
                position = entry.pairs.index(pair)
                if position + 1 < len(entry.pairs):
                    end = entry.pairs[position + 1].start
                    start = pair.start
                else:
                    end = pair.end
                    start = entry.pairs[position - 1].end
                definition.conf_file.replace_span(entry, start, end, "")
            self.reload()
            found = self.definitions(key)
        return {"before": before, "after": None, "file": path, "action": "removed"}
