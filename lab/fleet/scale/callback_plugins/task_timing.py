# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-host task timings of one ansible-playbook run, as JSON (lab/fleet/scale.sh).

ansible.posix.profile_tasks times a task across all hosts; the scale
measurements need each host's own time for each task, and the batches of a
`serial` play.  ansible-core starts a TaskQueueManager run per batch and sends
v2_playbook_on_play_start for each, so every batch is a "play" record here.

Enable with
    ANSIBLE_CALLBACK_PLUGINS=lab/fleet/scale/callback_plugins
    ANSIBLE_CALLBACKS_ENABLED=task_timing
    TASK_TIMING_JSON=/path/to/out.json

Output: {"main_cpu", "started", "ended", "plays": [{"name", "started", "ended"}],
"events": [{"play", "host", "task", "action", "started", "ended", "status"}],
"stats": {host: {"ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored"}}}.
Times are time.time() on the controller: "started" when the worker for that
host and task was started, "ended" when its result was processed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import resource
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_timing
type: aggregate
short_description: per-host task timings and batches of a run, as JSON (scale lab)
description:
  - Writes, at the end of the run, every task's start and end for every host,
    the batches of serial plays and the run's stats to the file named by
    E(TASK_TIMING_JSON).
requirements:
  - enable in configuration
options: {}
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._started = time.time()
        self._plays = []
        self._events = []
        self._open = {}

    # -- batches --------------------------------------------------------------
    def v2_playbook_on_play_start(self, play):
        now = time.time()
        if self._plays:
            self._plays[-1]["ended"] = now
        self._plays.append({"name": play.get_name().strip(), "started": now, "ended": None})

    # -- tasks --------------------------------------------------------------
    def v2_runner_on_start(self, host, task):
        self._open[(host.get_name(), task._uuid)] = time.time()

    def _done(self, result, status):
        host, task = result._host.get_name(), result._task
        ended = time.time()
        started = self._open.pop((host, task._uuid), ended)
        res = result._result
        if status == "ok" and res.get("changed"):
            status = "changed"
        self._events.append({
            "play": len(self._plays) - 1,
            "host": host,
            "task": task.get_name().strip(),
            "action": task.action,
            "started": started,
            "ended": ended,
            "status": status,
        })

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    # -- the end ------------------------------------------------------------
    def v2_playbook_on_stats(self, stats):
        now = time.time()
        if self._plays and self._plays[-1]["ended"] is None:
            self._plays[-1]["ended"] = now
        own = resource.getrusage(resource.RUSAGE_SELF)
        out = {
            # CPU of ansible-playbook's main process alone (it handles every
            # result, in one Python process), not of its workers
            "main_cpu": round(own.ru_utime + own.ru_stime, 2),
            "started": self._started,
            "ended": now,
            "plays": self._plays,
            "events": self._events,
            "stats": {host: stats.summarize(host) for host in sorted(stats.processed)},
        }
        path = os.environ.get("TASK_TIMING_JSON")
        if not path:
            self._display.warning("task_timing: TASK_TIMING_JSON is not set, nothing written")
            return
        with open(path, "w") as handle:
            json.dump(out, handle, indent=1, sort_keys=True)
