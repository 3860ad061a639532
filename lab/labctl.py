#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Drive a slurm-adopt test lab (standard library only).

A lab is described by a state file ``/run/slurm-adopt-lab/<name>.json`` written
by the lab's ``up.sh`` (``lab/host/up.sh`` writes ``host.json``). The schema::

    {"name", "slurm_version", "root", "slurm_conf", "nodename", "spool_dir",
     "slurmd_port", "ports": {"plain", "c", "py"[, "floor"]},
     "pam_services": {"plain", "c", "py"[, "floor"]}, "pam_dir", "module_path",
     "users": {"alice", "bob", "carol", "dave", "admin"}, "admin_group",
     "ssh_keys": {<username>: <private key path on the host>},
     "syslog", "cgroup_root"}

``root`` is where the lab's filesystem lives ("/" for the host lab, a chroot
directory otherwise). ``slurm_conf``, ``spool_dir``, ``pam_dir`` and
``module_path`` are paths inside that root; Slurm commands then run through
``chroot <root>``. ``ssh_keys``, ``syslog`` and ``cgroup_root`` are host paths.
ssh clients run on the host, except with ``via_job`` (the client must run
inside the job, so it runs where the job runs).

Typical use from a test::

    lab = Lab.load("host")
    j = lab.submit("labalice")
    r = lab.ssh("c", "labalice", "true")
    assert r.rc == 0 and r.job_id == j
    lab.cancel_all()

CLI: ``python3 lab/labctl.py [--lab NAME] status|jobs|submit|cancel|cancel-all|
ssh|bg|pids|set-account|restore-account|syslog`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Iterator, Sequence

STATE_DIR = os.environ.get("SLURM_ADOPT_LAB_STATE_DIR", "/run/slurm-adopt-lab")
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KINDS = ("plain", "c", "py")
# Optional sshd of a lab (the host lab has it): pam_python with a module that
# does nothing (lab/host/pam_floor.py), for benchmarks/login_latency.py.
EXTRA_KINDS = ("floor",)
# Private key copy inside each user's home (for ssh run by the user in a job).
HOME_KEY = ".ssh/lab_id_ed25519"
NO_JOBS_MSG = "Access denied by pam_slurm_adopt: you have no active jobs on this node"

# squeue states in which a job still holds (or will hold) node resources.
ACTIVE_STATES = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED",
    "RESIZING", "SIGNALING", "STAGE_OUT", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "RESV_DEL_HOLD", "SPECIAL_EXIT", "UPDATE_DB", "POWER_UP_NODE",
}

_LOCKS: dict[str, list] = {}  # lock path -> [fd, depth] (re-entrant per process)

_CG_BEGIN = "@@LABCG-BEGIN@@"
_CG_END = "@@LABCG-END@@"
_JOB_RE = re.compile(r"/job_(\d+)/step_([^/\s]+)")


class LabError(RuntimeError):
    """Something in the lab did not behave as expected."""


class LabNotUp(LabError):
    """The lab's state file is missing: the lab has not been brought up."""


class LabTimeout(LabError):
    """A bounded wait ran out."""


# --------------------------------------------------------------------------- cgroups

def parse_cgroup(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/cgroup text into {controller: path}.

    ``cpu,cpuacct`` style lines give one entry per controller; the cgroup v2
    line (``0::/path``) is stored under ``""``; named hierarchies keep their
    ``name=...`` key.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        ctrls, path = parts[1], parts[2]
        if not ctrls:
            out[""] = path
            continue
        for c in ctrls.split(","):
            out[c] = path
    return out


def job_cgroup_from_cgroup(text: str) -> str | None:
    """The cgroup path that shows which Slurm job (if any) a process is in.

    cgroup v1: the freezer path (proctrack/cgroup puts every step there);
    otherwise the first controller path (or the v2 path) mentioning job_<id>.
    None if the text has no cgroup lines at all.
    """
    cg = parse_cgroup(text)
    if not cg:
        return None
    if "freezer" in cg:
        return cg["freezer"]
    for path in cg.values():
        if _JOB_RE.search(path):
            return path
    return cg.get("", next(iter(cg.values())))


def job_id_from_cgroup(text: str) -> int | None:
    """Job id from /proc/<pid>/cgroup text (or from a single cgroup path).

    ``6:freezer:/slurm_vm/uid_30001/job_42/step_extern`` -> 42. Returns None
    when the process is not in a job. Works for cgroup v2 paths too
    (``0::/system.slice/slurmstepd.scope/job_42/step_extern/user/task_special``).
    """
    path = text if ":" not in text else job_cgroup_from_cgroup(text)
    if not path:
        return None
    m = _JOB_RE.search(path)
    return int(m.group(1)) if m else None


def step_from_cgroup(text: str) -> str | None:
    """Step name ("extern", "batch", "0", ...) from /proc/<pid>/cgroup text or a path."""
    path = text if ":" not in text else job_cgroup_from_cgroup(text)
    if not path:
        return None
    m = _JOB_RE.search(path)
    return m.group(2) if m else None


@dataclasses.dataclass
class Result:
    """Outcome of one ssh login.

    ``job_cgroup`` is the session's job-identifying cgroup path (freezer on
    cgroup v1), read from /proc/self/cgroup inside the session before the
    command ran; None if the login failed or probing was off.
    """

    rc: int
    stdout: str
    stderr: str
    job_cgroup: str | None
    cgroup: str = ""          # raw /proc/self/cgroup text of the session
    pid: int | None = None    # start_background(): pid of the started process

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def job_id(self) -> int | None:
        """The job the session landed in (None: not adopted into any job)."""
        return job_id_from_cgroup(self.job_cgroup) if self.job_cgroup else None

    @property
    def step(self) -> str | None:
        return step_from_cgroup(self.job_cgroup) if self.job_cgroup else None

    @property
    def message(self) -> str:
        """stderr without ssh client noise (host-key warnings, connection closed)."""
        keep = []
        for line in self.stderr.splitlines():
            if line.startswith("Warning: Permanently added") or line.startswith("Connection closed by"):
                continue
            keep.append(line)
        return "\n".join(keep).strip()


# --------------------------------------------------------------------------- process helpers

def _run(argv: Sequence[str], *, timeout: float, input: str | None = None,
         cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run argv in its own session; on timeout kill the whole process group."""
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        cwd=cwd, start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise LabTimeout(f"timed out after {timeout}s: {shlex.join(argv)}\n"
                         f"stdout: {out[-2000:]}\nstderr: {err[-2000:]}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _has_procs(cgdir: str, recursive: bool = False) -> bool:
    """cgroup directory exists and has a process in it (or below, if recursive)."""
    dirs = [cgdir]
    if recursive:
        dirs = [entry[0] for entry in os.walk(cgdir)]
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                if f.read().strip():
                    return True
        except OSError:
            continue
    return False


def _wait(pred, timeout: float, what: str, interval: float = 0.1):
    """Poll pred() until it returns a truthy value; raise LabTimeout after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise LabTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the lab

def _pid_alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _descendants(pid: int) -> list[int]:
    """Pids of every process below pid (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def salloc_output(proc: subprocess.Popen) -> str:
    """What a start_salloc() process wrote so far (stdout and stderr)."""
    proc.output.seek(0)
    return proc.output.read().decode("utf-8", "replace").strip()[-2000:]


def stop_salloc(proc: subprocess.Popen, timeout: float = 15) -> None:
    """End a start_salloc() process and the command it runs (salloc puts that
    in a process group of its own, and leaves it behind when killed)."""
    below = _descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _write_atomic(path: str, data: bytes) -> None:
    """Replace path's content (same mode), so a reader sees old or new."""
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".labctl-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _listening(path: str) -> bool:
    """A step socket that still accepts connections (a crashed stepd leaves a
    socket file that refuses them: that step is gone)."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(path)
        except ConnectionRefusedError:
            return False
        except OSError:
            return True
    return True


class Lab:
    """One lab, as described by its state JSON."""

    def __init__(self, state: dict, path: str | None = None):
        self.state = state
        self.path = path
        self.name: str = state["name"]
        self.root: str = state.get("root", "/") or "/"
        self.slurm_version: str = state["slurm_version"]
        self.slurm_conf: str = state["slurm_conf"]
        self.nodename: str = state["nodename"]
        self.spool_dir: str = state["spool_dir"]
        self.slurmd_port: int = int(state.get("slurmd_port", 6818))
        self.ports: dict[str, int] = {k: int(v) for k, v in state["ports"].items()}
        self.pam_services: dict[str, str] = dict(state["pam_services"])
        self.pam_dir: str = state.get("pam_dir", "/etc/pam.d")
        self.module_path: str = state.get("module_path", "")
        self.users: dict[str, str] = dict(state["users"])
        self.admin_group: str = state.get("admin_group", "")
        self.ssh_keys: dict[str, str] = dict(state["ssh_keys"])
        self.syslog: str = state.get("syslog", "/var/log/auth.log")
        self.cgroup_root: str = state.get("cgroup_root", "/sys/fs/cgroup")
        self._pw_cache: dict[str, tuple[int, int, str]] = {}

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, name: str = "host", state_dir: str | None = None) -> "Lab":
        path = os.path.join(state_dir or STATE_DIR, f"{name}.json")
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            raise LabNotUp(f"lab {name!r} is not up: {path} does not exist "
                           f"(bring it up with lab/{name}/up.sh)") from None
        except (OSError, ValueError) as e:
            raise LabError(f"cannot read lab state {path}: {e}") from None
        return cls(state, path)

    @staticmethod
    def available(state_dir: str | None = None) -> list[str]:
        """Names of labs that have a state file."""
        d = state_dir or STATE_DIR
        try:
            return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def __repr__(self) -> str:
        return f"<Lab {self.name} slurm {self.slurm_version} root={self.root}>"

    # ---------------------------------------------------------------- exclusive use
    @contextlib.contextmanager
    def lock(self, timeout: float = 900) -> Iterator[None]:
        """Hold the lab exclusively (advisory flock on <state_dir>/<name>.lock).

        Test sessions that submit/cancel jobs or edit PAM files should hold
        it, so that two concurrent runs do not cancel each other's jobs.
        Re-entrant within one process; waits at most ``timeout`` seconds.
        """
        path = os.path.join(os.path.dirname(self.path or os.path.join(STATE_DIR, "x")),
                            f"{self.name}.lock")
        held = _LOCKS.get(path)
        if held:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LabTimeout(f"lab {self.name} is locked by another user of it "
                                         f"({path}) for more than {timeout}s") from None
                    time.sleep(0.5)
            _LOCKS[path] = [fd, 1]
            try:
                yield
            finally:
                del _LOCKS[path]
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- paths / users
    def host_path(self, path: str) -> str:
        """Host path of a path inside the lab's root."""
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def user(self, who: str) -> str:
        """Username for a role ("alice", "admin") or a username."""
        return self.users.get(who, who)

    def _pw(self, user: str) -> tuple[int, int, str]:
        """(uid, gid, home) of user as seen inside the lab's root."""
        if user not in self._pw_cache:
            entry = None
            with open(self.host_path("/etc/passwd")) as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) >= 7 and parts[0] == user:
                        entry = (int(parts[2]), int(parts[3]), parts[5])
                        break
            if entry is None:
                raise LabError(f"user {user!r} does not exist in lab {self.name}")
            self._pw_cache[user] = entry
        return self._pw_cache[user]

    def uid(self, who: str) -> int:
        return self._pw(self.user(who))[0]

    def key(self, who: str) -> str:
        """Host path of the private ssh key of a user."""
        u = self.user(who)
        try:
            return self.ssh_keys[u]
        except KeyError:
            raise LabError(f"lab {self.name} has no ssh key for {u!r}") from None

    def extern_socket(self, jobid: int) -> str:
        """Host path of the job's extern step socket."""
        major_minor = tuple(int(x) for x in re.findall(r"\d+", self.slurm_version)[:2])
        ext = 4294967295 if major_minor < (20, 11) else 4294967292
        return self.host_path(f"{self.spool_dir}/{self.nodename}_{jobid}.{ext}")

    def pam_file(self, kind: str) -> str:
        """Host path of the PAM service file of kind plain/c/py."""
        return self.host_path(os.path.join(self.pam_dir, self.pam_services[kind]))

    # ---------------------------------------------------------------- running commands
    def _env(self, user: str | None) -> list[str]:
        env = [f"PATH={SYS_PATH}", "LANG=C.UTF-8", f"SLURM_CONF={self.slurm_conf}"]
        if user:
            home = self._pw(user)[2]
            env += [f"HOME={home}", f"USER={user}", f"LOGNAME={user}"]
        else:
            env += ["HOME=/root", "USER=root", "LOGNAME=root"]
        return env

    def command(self, argv: Sequence[str], user: str | None = None) -> list[str]:
        """argv wrapped to run in the lab (inside root, as user, clean env)."""
        cmd = ["env", "-i", *self._env(user), *argv]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        if self.root != "/":
            cmd = ["chroot", self.root, *cmd]
        return cmd

    def run(self, argv: Sequence[str], *, user: str | None = None, timeout: float = 30,
            check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the lab (as root or as user)."""
        p = _run(self.command(argv, self.user(user) if user else None),
                 timeout=timeout, input=input, cwd="/")
        if check and p.returncode != 0:
            raise LabError(f"{shlex.join(argv)} (as {user or 'root'}) exited {p.returncode}:\n"
                           f"{p.stderr.strip()}\n{p.stdout.strip()}")
        return p

    def slurm(self, *cmd: str, user: str | None = None, timeout: float = 30, check: bool = True) -> str:
        """Run a Slurm command (scontrol, squeue, ...) in the lab; return stdout."""
        return self.run(list(cmd), user=user, timeout=timeout, check=check).stdout

    # ---------------------------------------------------------------- jobs
    def jobs(self, user: str | None = None) -> list[dict]:
        """Active jobs: [{"id", "user", "state"}], oldest first."""
        args = ["squeue", "-h", "-o", "%i|%u|%T"]
        if user:
            args += ["-u", self.user(user)]
        out = self.slurm(*args)
        jobs = []
        for line in out.splitlines():
            if not line.strip():
                continue
            jid, u, st = line.strip().split("|")
            jobs.append({"id": int(jid), "user": u, "state": st})
        return sorted(jobs, key=lambda j: j["id"])

    def job_state(self, jobid: int) -> str | None:
        """Current state of a job (None if slurmctld no longer knows it)."""
        p = self.run(["squeue", "-h", "-t", "all", "-j", str(jobid), "-o", "%T"], check=False)
        st = p.stdout.strip()
        return st.split()[0] if st else None

    def submit(self, user: str, *, sleep: int = 600, extra_args: Iterable[str] = (),
               timeout: float = 20, before: str = "") -> int:
        """sbatch --wrap 'sleep N' as user; wait until RUNNING with its extern step.

        ``before``: shell commands the batch script runs before the sleep.

        "With its extern step" means the step's socket exists and its cgroup
        holds the step's placeholder process (the socket appears ~20 ms before
        the cgroup; a login in that window would fail to be adopted).

        Returns the job id. Raises LabTimeout if the job is not running (with
        its extern step) within ``timeout`` seconds.
        """
        u = self.user(user)
        args = ["sbatch", "--parsable", f"--job-name=lab-{u}", "--chdir=/tmp",
                "-o", "/dev/null", "-e", "/dev/null", *extra_args,
                f"--wrap={before + '; ' if before else ''}sleep {int(sleep)}"]
        out = self.slurm(*args, user=u, timeout=timeout)
        jobid = int(out.strip().split(";")[0])
        self.wait_running(jobid, u, timeout)
        return jobid

    def wait_running(self, jobid: int, user: str, timeout: float = 20) -> None:
        """Wait until job runs with its extern step (LabTimeout otherwise)."""
        u = self.user(user)
        sock = self.extern_socket(jobid)

        def ready():
            st = self.job_state(jobid)
            if st in ("FAILED", "CANCELLED", "COMPLETED", "TIMEOUT", "NODE_FAIL",
                      "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE", "PREEMPTED"):
                raise LabError(f"job {jobid} of {u} ended early: {st}\n"
                               + self.slurm("scontrol", "show", "job", str(jobid), check=False))
            return (st == "RUNNING" and os.path.exists(sock)
                    and self.extern_cgroup_ready(jobid, u))

        try:
            _wait(ready, timeout, f"job {jobid} of {u} to run with extern step {sock}")
        except LabTimeout as e:
            detail = self.slurm("scontrol", "show", "job", str(jobid), check=False)
            raise LabTimeout(f"{e}\n{detail}") from None

    def extern_cgroup_ready(self, jobid: int, user: str) -> bool:
        """The job's extern step cgroup exists and holds a process.

        cgroup v1: freezer (and memory, when Slurm uses that hierarchy) under
        ``slurm_<nodename>`` or ``slurm``; cgroup v2: ``.../job_J/step_extern``
        under slurmstepd's scope.
        """
        uid = self.uid(user)
        root = self.cgroup_root
        if os.path.isdir(os.path.join(root, "freezer")):
            dirs = []
            for ctl in ("freezer", "memory"):
                for pre in (f"slurm_{self.nodename}", "slurm"):
                    base = os.path.join(root, ctl, pre)
                    if os.path.isdir(base):
                        dirs.append(f"{base}/uid_{uid}/job_{jobid}/step_extern")
                        break
                else:
                    if ctl == "freezer":
                        return False
            # 26.05's extern step has no placeholder process (and no memory
            # cgroup): its freezer cgroup existing is all there is to wait for
            if self.slurm_version.split(".")[:2] >= ["26", "05"]:
                return os.path.isdir(dirs[0])
            return all(_has_procs(d) for d in dirs)
        hits = glob.glob(f"{root}/system.slice/*slurmstepd.scope/job_{jobid}/step_extern")
        return bool(hits) and any(_has_procs(d, recursive=True) for d in hits)

    def jobs_of(self, user: str) -> list[int]:
        """Ids of user's active jobs, oldest first."""
        return [j["id"] for j in self.jobs(user)]

    def cancel(self, jobid: int | Iterable[int], *, wait: bool = True, timeout: float = 30) -> None:
        """scancel one job (or several); with wait, until gone and extern sockets removed."""
        ids = [int(jobid)] if isinstance(jobid, (int, str)) else [int(j) for j in jobid]
        if not ids:
            return
        self.slurm("scancel", *map(str, ids), check=False)
        if wait:
            self._wait_jobs_gone(ids, timeout)

    def cancel_all(self, *, timeout: float = 30) -> None:
        """Cancel every job in the lab and wait until none is left."""
        ids = [j["id"] for j in self.jobs()]
        if ids:
            self.slurm("scancel", *map(str, ids), check=False)
        self._wait_jobs_gone(ids, timeout, all_jobs=True)

    def _wait_jobs_gone(self, ids: list[int], timeout: float, *, all_jobs: bool = False) -> None:
        def gone():
            active = self.jobs()
            if all_jobs and active:
                return False
            if any(j["id"] in ids for j in active):
                return False
            return not any(_listening(self.extern_socket(i)) for i in ids)

        try:
            _wait(gone, timeout, f"jobs {ids or 'all'} to end")
        except LabTimeout as e:
            raise LabTimeout(f"{e}; still active: {self.jobs()}") from None

    # ---------------------------------------------------------------- slurm.conf variants
    def conf_value(self, key: str) -> str | None:
        """Value of a top-level slurm.conf key (case-insensitive; last one wins)."""
        value = None
        with open(self.host_path(self.slurm_conf), encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                m = re.match(r"\s*([A-Za-z]+)\s*=\s*(\S*)", line)
                if m and m.group(1).lower() == key.lower():
                    value = m.group(2)
        return value

    def _daemon(self, pidfile_key: str) -> dict | None:
        """How the running daemon of a pid file was started: argv, env, root, pid."""
        pidfile = self.conf_value(pidfile_key)
        if not pidfile:
            raise LabError(f"{self.slurm_conf} has no {pidfile_key}")
        try:
            with open(self.host_path(pidfile)) as f:
                pid = int(f.read().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = [a.decode() for a in f.read().split(b"\0") if a]
            root = os.readlink(f"/proc/{pid}/root")
        except (OSError, ValueError, IndexError):
            return None
        return {"pid": pid, "argv": argv, "env": env, "root": root, "pidfile": pidfile}

    def restart_slurm(self, timeout: float = 90) -> float:
        """Stop the lab's slurmd and slurmctld (by their pid files, nothing
        else) and start them again exactly as they were started (argv,
        environment, root). Returns the seconds it took until the lab was
        healthy again. Jobs must be gone first (a restarted slurmctld with
        ``-c`` forgets them)."""
        t0 = time.monotonic()
        daemons = {k: self._daemon(k) for k in ("SlurmdPidFile", "SlurmctldPidFile")}
        missing = [k for k, d in daemons.items() if d is None]
        if missing:
            raise LabError(f"lab {self.name}: no running daemon for {missing}")
        for d in daemons.values():                   # slurmd first, then slurmctld
            with contextlib.suppress(ProcessLookupError):
                os.kill(d["pid"], signal.SIGTERM)
            try:
                _wait(lambda d=d: not _pid_alive(d["pid"]), 30, f"{d['argv'][0]} to exit")
            except LabTimeout:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(d["pid"], signal.SIGKILL)
                _wait(lambda d=d: not _pid_alive(d["pid"]), 10, f"{d['argv'][0]} to die")
        for key in ("SlurmctldPidFile", "SlurmdPidFile"):
            d = daemons[key]
            argv = ["env", "-i", *d["env"], *d["argv"]]
            if d["root"] != "/":
                argv = ["chroot", d["root"], *argv]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.host_path(d["pidfile"]))
            # the daemons detach themselves; the started process returns then
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, timeout=60,
                               cwd="/", check=False)
            if p.returncode != 0:
                raise LabError(f"restarting {shlex.join(d['argv'])} exited {p.returncode}")
            if key == "SlurmctldPidFile":
                _wait(lambda: "is UP" in self.run(["scontrol", "ping"], check=False).stdout,
                      30, "slurmctld to answer")
        self.ensure_up(timeout=timeout - (time.monotonic() - t0))
        return time.monotonic() - t0

    @contextlib.contextmanager
    def slurm_conf_variant(self, settings: dict[str, str],
                           files: dict[str, str] | None = None) -> Iterator[float]:
        """Run the lab with some slurm.conf keys changed (a key's line is
        replaced, or added when absent) and extra files next to slurm.conf
        (``job_container.conf``), then give the lab back as it was. Each
        switch restarts slurmctld and slurmd (restart_slurm); every job is
        cancelled before each switch. Yields the seconds the switch took."""
        conf = self.host_path(self.slurm_conf)
        with open(conf, "rb") as f:
            original = f.read()
        lines = original.decode("utf-8", "surrogateescape").splitlines(keepends=True)
        todo = dict(settings)
        for i, line in enumerate(lines):
            m = re.match(r"\s*([A-Za-z]+)\s*=", line)
            if m:
                for key in list(todo):
                    if key.lower() == m.group(1).lower():
                        lines[i] = f"{key}={todo.pop(key)}\n"
        node = next((i for i, l in enumerate(lines) if re.match(r"\s*NodeName\s*=", l)), len(lines))
        lines[node:node] = [f"{k}={v}\n" for k, v in todo.items()]   # before the node lines
        etc = os.path.dirname(conf)
        added = []
        self.cancel_all(timeout=60)
        try:
            for name, text in (files or {}).items():
                path = os.path.join(etc, name)
                if os.path.exists(path):
                    raise LabError(f"{path} exists already: not replacing it")
                with open(path, "w") as f:
                    f.write(text)
                added.append(path)
            _write_atomic(conf, "".join(lines).encode("utf-8", "surrogateescape"))
            took = self.restart_slurm()
            yield took
        finally:
            with contextlib.suppress(LabError):
                self.cancel_all(timeout=60)
            _write_atomic(conf, original)
            for path in added:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            self.restart_slurm()

    def start_salloc(self, user: str, args: Sequence[str] = (), *, env: Sequence[str] = (),
                     sleep: int = 600, timeout: float = 30) -> tuple[int, subprocess.Popen]:
        """``salloc ARGS sleep N`` as user (``env``: extra NAME=VALUE), kept
        running in the background as an interactive allocation is (X11
        forwarding goes through it). Waits for the job to run with its extern
        step; returns (job id, the salloc process)."""
        u = self.user(user)
        argv = self.command(["env", *env, "salloc", f"--job-name=lab-{u}", *args,
                             "sleep", str(int(sleep))], u)
        before = {j["id"] for j in self.jobs()}
        out = tempfile.TemporaryFile()    # not a pipe: salloc's command would hold it open
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, cwd="/")
        proc.output = out

        def new_job():
            if proc.poll() is not None:
                return -1
            return next((j["id"] for j in self.jobs(u) if j["id"] not in before), None)

        try:
            jobid = _wait(new_job, timeout, f"salloc of {u} to get a job")
            if jobid == -1:
                raise LabError(f"salloc {shlex.join(args)} of {u} exited {proc.returncode}: "
                               + salloc_output(proc))
            self.wait_running(jobid, u, timeout)
        except BaseException:
            stop_salloc(proc)
            raise
        return jobid, proc

    # ---------------------------------------------------------------- PAM stacks
    def default_account_line(self, kind: str) -> str:
        """The adopt line up.sh writes for kind c or py."""
        svc = self.pam_services[kind]
        if kind == "c":
            return f"account    required     pam_slurm_adopt.so service={svc}"
        if kind == "py":
            return f"account    required     pam_python.so {self.module_path} service={svc}"
        raise LabError(f"PAM service kind {kind!r} has no adopt line (use 'c' or 'py')")

    def account_line(self, kind: str) -> str:
        """Current adopt line (the last account line) of kind's PAM file."""
        lines = self._read_pam(kind)
        return lines[self._last_account(lines, kind)].rstrip("\n")

    def set_account_line(self, kind: str, line: str | None) -> None:
        """Replace the adopt line (last account line) of kind's PAM file.

        ``line=None`` restores the default. sshd reads PAM files per
        connection, so the next login uses it; no restart needed.
        """
        if kind not in ("c", "py"):
            raise LabError("set_account_line: kind must be 'c' or 'py'")
        if line is None:
            line = self.default_account_line(kind)
        line = line.strip()
        if "\n" in line or not re.match(r"^-?account\s", line):
            raise LabError(f"not a single PAM account line: {line!r}")
        lines = self._read_pam(kind)
        lines[self._last_account(lines, kind)] = line + "\n"
        path = self.pam_file(kind)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".labctl-")
        try:
            with os.fdopen(fd, "w") as f:
                f.writelines(lines)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # atomic: a concurrent login sees old or new
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def set_account_options(self, kind: str, *options: str) -> str:
        """Default adopt line plus extra module options; returns the line."""
        line = " ".join([self.default_account_line(kind), *options])
        self.set_account_line(kind, line)
        return line

    def restore_account_line(self, kind: str | None = None) -> None:
        """Restore the default adopt line of kind (or of both c and py)."""
        for k in ([kind] if kind else ["c", "py"]):
            self.set_account_line(k, None)

    @contextlib.contextmanager
    def pam_account(self, kind: str, line: str) -> Iterator[None]:
        """Context manager: use line as kind's adopt line, restore the default after."""
        self.set_account_line(kind, line)
        try:
            yield
        finally:
            self.set_account_line(kind, None)

    def _read_pam(self, kind: str) -> list[str]:
        with open(self.pam_file(kind)) as f:
            return f.readlines()

    def _last_account(self, lines: list[str], kind: str) -> int:
        idx = [i for i, l in enumerate(lines) if re.match(r"^\s*-?account\s", l)]
        if not idx:
            raise LabError(f"{self.pam_file(kind)} has no account line")
        return idx[-1]

    # ---------------------------------------------------------------- ssh
    def ssh_argv(self, kind: str, user: str, command: str, *, key: str | None = None,
                 options: Sequence[str] = ()) -> list[str]:
        u = self.user(user)
        return ["ssh", "-F", "/dev/null", "-p", str(self.ports[kind]),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=INFO",
                "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes",
                *options, "-i", key or self.key(u), f"{u}@127.0.0.1", command]

    def ssh(self, kind: str, user: str, command: str = "true", *, via_job: int | None = None,
            timeout: float = 30, probe_cgroup: bool = True, options: Sequence[str] = ()) -> Result:
        """Log in over the lab sshd of kind (plain/c/py) as user and run command.

        With ``via_job=J`` the ssh client runs inside job J (``srun --jobid=J
        --overlap`` as the user), so the server's callerid RPC can identify J.
        With ``probe_cgroup`` (default) the session's /proc/self/cgroup is
        captured first (``Result.job_cgroup`` / ``.job_id``) and stripped
        from stdout; ``rc`` is the exit status of ``command`` (255 when the
        login failed).
        """
        u = self.user(user)
        remote = command
        if probe_cgroup:
            remote = (f"echo {_CG_BEGIN}; cat /proc/self/cgroup; echo {_CG_END}; " + command)
        if via_job is None:
            p = _run(self.ssh_argv(kind, u, remote, options=options), timeout=timeout)
        else:
            key = self._home_key(u)
            srun = ["srun", f"--jobid={int(via_job)}", "--overlap", "-N1", "-n1", "--quiet",
                    *self.ssh_argv(kind, u, remote, key=key, options=options)]
            p = _run(self.command(srun, u), timeout=timeout)
        stdout, cgroup = p.stdout, ""
        if probe_cgroup and _CG_BEGIN in stdout:
            before, rest = stdout.split(_CG_BEGIN + "\n", 1)
            cgroup, after = rest.split(_CG_END + "\n", 1) if _CG_END + "\n" in rest else (rest, "")
            stdout = before + after
        return Result(p.returncode, stdout, p.stderr,
                      job_cgroup_from_cgroup(cgroup) if cgroup else None, cgroup)

    def _home_key(self, user: str) -> str:
        """Path (inside root) of a copy of user's key owned by user; created if missing."""
        uid, gid, home = self._pw(user)
        inside = os.path.join(home, HOME_KEY)
        dst = self.host_path(inside)
        with open(self.key(user), "rb") as f:
            want = f.read()
        try:
            with open(dst, "rb") as f:
                if f.read() == want and os.stat(dst).st_uid == uid:
                    return inside
        except FileNotFoundError:
            pass
        d = os.path.dirname(dst)
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chown(d, uid, gid)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(want)
        os.chown(dst, uid, gid)
        os.chmod(dst, 0o600)
        return inside

    def start_background(self, kind: str, user: str, command: str, *,
                         via_job: int | None = None, timeout: float = 30) -> Result:
        """Start command over ssh so that it outlives the ssh session.

        The process is detached (nohup + setsid, stdio on /dev/null); its pid
        is in ``Result.pid`` and the session's cgroup in ``Result.job_cgroup``.
        """
        remote = (f"nohup setsid sh -c {shlex.quote(command)} </dev/null >/dev/null 2>&1 & "
                  "echo LABPID=$!")
        r = self.ssh(kind, user, remote, via_job=via_job, timeout=timeout)
        m = re.search(r"LABPID=(\d+)", r.stdout)
        r.pid = int(m.group(1)) if m else None
        return r

    def pids_of(self, user: str, pattern: str) -> list[int]:
        """Pids of user's processes whose full command line matches pattern (pgrep -f)."""
        p = _run(["pgrep", "-u", str(self.uid(user)), "-f", pattern], timeout=10)
        if p.returncode not in (0, 1):
            raise LabError(f"pgrep failed: {p.stderr.strip()}")
        return sorted(int(x) for x in p.stdout.split())

    def wait_pids(self, user: str, pattern: str, timeout: float = 10) -> list[int]:
        """Wait until pids_of(user, pattern) finds a process and return the pids
        (LabTimeout otherwise). A process just started in the background may be
        between two execs (nohup, setsid, sh), when its command line reads empty."""
        return _wait(lambda: self.pids_of(user, pattern), timeout, f"a process of {user} matching {pattern!r}")

    def wait_pids_gone(self, user: str, pattern: str, timeout: float = 20) -> None:
        """Wait until pids_of(user, pattern) is empty (LabTimeout otherwise)."""
        _wait(lambda: not self.pids_of(user, pattern), timeout,
              f"processes of {user} matching {pattern!r} to exit")

    @staticmethod
    def cgroup_of_pid(pid: int) -> str:
        """Raw /proc/<pid>/cgroup text."""
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()

    def job_of_pid(self, pid: int) -> int | None:
        """Slurm job a host pid belongs to, from its cgroup (None: none)."""
        return job_id_from_cgroup(self.cgroup_of_pid(pid))

    # ---------------------------------------------------------------- syslog
    def _syslog_path(self) -> str:
        if os.path.exists(self.syslog) or self.root == "/":
            return self.syslog
        return self.host_path(self.syslog)

    def syslog_mark(self) -> int:
        """A mark (the current end of the syslog file) for syslog_since()."""
        try:
            return os.path.getsize(self._syslog_path())
        except FileNotFoundError:
            return 0

    def syslog_since(self, mark: int) -> list[str]:
        """Syslog lines written after mark."""
        path = self._syslog_path()
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() < mark:  # rotated / truncated
                    mark = 0
                f.seek(mark)
                data = f.read()
        except FileNotFoundError:
            return []
        return data.decode("utf-8", "replace").splitlines()

    def wait_syslog(self, pattern: str, mark: int, timeout: float = 10) -> list[str]:
        """Lines after mark matching regex pattern; polls up to timeout ([] if none)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            hits = [l for l in self.syslog_since(mark) if rx.search(l)]
            if hits or time.monotonic() >= deadline:
                return hits
            time.sleep(0.1)

    # ---------------------------------------------------------------- health
    def check(self) -> list[str]:
        """Problems with the running lab ([] when healthy)."""
        problems = []
        p = self.run(["scontrol", "ping"], check=False, timeout=20)
        if "is UP" not in p.stdout:
            problems.append(f"slurmctld not responding: {p.stdout.strip()} {p.stderr.strip()}")
        else:
            st = self.slurm("sinfo", "-h", "-N", "-n", self.nodename, "-o", "%T", check=False).strip()
            if st not in ("idle", "mixed", "allocated"):
                problems.append(f"node {self.nodename} state is {st!r}")
        for kind, port in self.ports.items():
            with socket.socket() as s:
                s.settimeout(3)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError as e:
                    problems.append(f"sshd {kind} (port {port}) not reachable: {e}")
        return problems

    def ensure_up(self, timeout: float = 0) -> None:
        """Raise LabError unless check() finds no problem (polling up to timeout s).

        A node that is still "completing" the previous jobs counts as a
        problem, so ensure_up(timeout=60) also waits for that to settle.
        """
        deadline = time.monotonic() + timeout
        problems = self.check()
        while problems and time.monotonic() < deadline:
            time.sleep(1)
            problems = self.check()
        if problems:
            raise LabError(f"lab {self.name} is not healthy:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labctl", description="Drive a slurm-adopt test lab.")
    ap.add_argument("--lab", default="host", help="lab name (state file <name>.json)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status", help="show state, health, node and jobs")
    sub.add_parser("jobs", help="list active jobs")
    s = sub.add_parser("submit", help="submit a sleep job as USER and wait until it runs")
    s.add_argument("user")
    s.add_argument("--sleep", type=int, default=600)
    s.add_argument("extra", nargs="*", help="extra sbatch arguments (after --)")
    s = sub.add_parser("cancel", help="cancel jobs")
    s.add_argument("jobid", nargs="+", type=int)
    sub.add_parser("cancel-all", help="cancel every lab job")
    s = sub.add_parser("ssh", help="ssh to the lab sshd of KIND as USER")
    s.add_argument("kind", choices=KINDS + EXTRA_KINDS)
    s.add_argument("user")
    s.add_argument("command", nargs="?", default="true")
    s.add_argument("--via-job", type=int)
    s = sub.add_parser("bg", help="start a detached command over ssh")
    s.add_argument("kind", choices=KINDS + EXTRA_KINDS)
    s.add_argument("user")
    s.add_argument("command")
    s = sub.add_parser("pids", help="pids of USER matching PATTERN")
    s.add_argument("user")
    s.add_argument("pattern")
    s = sub.add_parser("set-account", help="set the adopt line of KIND (c/py)")
    s.add_argument("kind", choices=("c", "py"))
    s.add_argument("line")
    s = sub.add_parser("restore-account", help="restore the default adopt line(s)")
    s.add_argument("kind", nargs="?", choices=("c", "py"))
    s = sub.add_parser("syslog", help="print the last N syslog lines")
    s.add_argument("-n", type=int, default=20)
    a = ap.parse_args(argv)

    try:
        lab = Lab.load(a.lab)
        if a.cmd == "status":
            print(json.dumps(lab.state, indent=2))
            problems = lab.check()
            print("health:", "ok" if not problems else "; ".join(problems))
            print(lab.slurm("sinfo", check=False), end="")
            print(lab.slurm("squeue", check=False), end="")
            for k in ("c", "py"):
                print(f"{k} adopt line: {lab.account_line(k)}")
            return 1 if problems else 0
        if a.cmd == "jobs":
            for j in lab.jobs():
                print(f"{j['id']}\t{j['user']}\t{j['state']}")
        elif a.cmd == "submit":
            print(lab.submit(a.user, sleep=a.sleep, extra_args=a.extra))
        elif a.cmd == "cancel":
            for j in a.jobid:
                lab.cancel(j)
        elif a.cmd == "cancel-all":
            lab.cancel_all()
        elif a.cmd in ("ssh", "bg"):
            r = (lab.ssh(a.kind, a.user, a.command, via_job=a.via_job) if a.cmd == "ssh"
                 else lab.start_background(a.kind, a.user, a.command))
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            print(f"[rc={r.rc} job_cgroup={r.job_cgroup} job={r.job_id}"
                  + (f" pid={r.pid}" if r.pid else "") + "]", file=sys.stderr)
            return r.rc
        elif a.cmd == "pids":
            print(" ".join(map(str, lab.pids_of(a.user, a.pattern))))
        elif a.cmd == "set-account":
            lab.set_account_line(a.kind, a.line)
        elif a.cmd == "restore-account":
            lab.restore_account_line(a.kind)
        elif a.cmd == "syslog":
            lines = lab.syslog_since(max(0, lab.syslog_mark() - 200 * a.n))
            print("\n".join(lines[-a.n:]))
    except LabError as e:
        print(f"labctl: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
