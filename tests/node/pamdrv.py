# SPDX-License-Identifier: GPL-3.0-or-later
"""A direct PAM call in a lab, for what sshd hides: the PAM return code, the
PAM environment, the messages and the syslog lines of one account
transaction, through SchedMD's C module or ours, in the same run.

tests/node/pam_call.c (built here with the host's gcc and libpam headers,
copied into each lab's root) calls pam_start/pam_acct_mgmt/pam_getenvlist
for a PAM service of its own:

    account [success=done ignore=ignore default=die] <adopt module> service=<svc> <options>
    account required pam_succeed_if.so quiet user = never-a-user-of-the-lab

so the module's own answer shows: PAM_SUCCESS passes, PAM_IGNORE falls
through to the second line (PAM_AUTH_ERR, reported here as PAM_IGNORE), any
other code ends the stack with that code. With via_job, pam_call first
accepts a TCP connection from a client running inside that job (srun
--overlap), as sshd holds the ssh connection: both modules then find it in
/proc/self/fd and ask the slurmd at the client's address (callerid).
"""

import dataclasses
import os
import re
import socket
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO, "tests", "node", "pam_call.c")
BUILT = os.path.join(REPO, "build", "pam_call")
INSIDE = "/var/lib/slurm-adopt-lab-driver/pam_call"
SERVICES = {"c": "adopt-drv-c", "py": "adopt-drv-py"}
IGNORE_MARKER_RC = 7          # PAM_AUTH_ERR of the pam_succeed_if line
PAM_NAMES = {0: "PAM_SUCCESS", 4: "PAM_SYSTEM_ERR", 6: "PAM_PERM_DENIED", 14: "PAM_SESSION_ERR",
             25: "PAM_IGNORE", 29: "PAM_BAD_ITEM", 3: "PAM_SERVICE_ERR"}
_JOB_RE = re.compile(r"/job_(\d+)/step_([^/\s]+)")


def build():
    """Compile pam_call once per session (gcc + libpam0g-dev on the host)."""
    if (not os.path.exists(BUILT)
            or os.path.getmtime(BUILT) < os.path.getmtime(SOURCE)):
        os.makedirs(os.path.dirname(BUILT), exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", BUILT, SOURCE, "-lpam"], check=True,
                       timeout=120)
    return BUILT


def install(lab):
    """pam_call inside the lab's root; returns its path there."""
    dest = lab.host_path(INSIDE)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(build(), "rb") as src, open(dest + ".tmp", "wb") as out:
        out.write(src.read())
    os.chmod(dest + ".tmp", 0o755)
    os.replace(dest + ".tmp", dest)
    return INSIDE


def module_line(lab, kind, options=()):
    svc = SERVICES[kind]
    if kind == "c":
        words = ["pam_slurm_adopt.so", "service=%s" % svc]
    else:
        words = ["pam_python.so", lab.module_path, "service=%s" % svc]
    return " ".join(words + list(options))


def write_service(lab, kind, options=(), line=None):
    """The driver's PAM service for kind (c/py) with these module options."""
    text = ("# written by tests/node/pamdrv.py\n"
            "account [success=done ignore=ignore default=die] %s\n"
            "account required pam_succeed_if.so quiet user = never-a-user-of-the-lab\n"
            % (line or module_line(lab, kind, options)))
    path = lab.host_path(os.path.join(lab.pam_dir, SERVICES[kind]))
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def remove_services(lab):
    for svc in SERVICES.values():
        path = lab.host_path(os.path.join(lab.pam_dir, svc))
        if os.path.exists(path):
            os.unlink(path)


@dataclasses.dataclass
class Call:
    rc: int
    messages: list
    env: dict
    cgroup: str
    marker: bool
    syslog: list
    elapsed: float

    @property
    def rc_name(self):
        if self.rc == IGNORE_MARKER_RC:
            return "PAM_IGNORE"
        return PAM_NAMES.get(self.rc, str(self.rc))

    @property
    def job(self):
        from labctl import job_cgroup_from_cgroup
        path = job_cgroup_from_cgroup(self.cgroup) or ""
        match = _JOB_RE.search(path)
        return int(match.group(1)) if match else None

    def outcome(self, normalise=None):
        """What the differential compares."""
        env = {k: v for k, v in self.env.items() if k in ("SLURM_JOB_ID", "DISPLAY", "XAUTHORITY")}
        return {"rc": self.rc_name, "job": self.job, "messages": self.messages, "env": env,
                "syslog": [normalise(l) if normalise else l for l in self.syslog]}


def free_port(v6=False):
    with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET) as s:
        s.bind(("::1" if v6 else "127.0.0.1", 0))
        return s.getsockname()[1]


CLIENT = ("import socket,sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 20); "
          "s.settimeout(60); s.recv(1)")


def driver_command(lab, argv, no_lang=False):
    cmd = lab.command(argv)
    if no_lang:                    # as sshd under systemd: no LANG in the environment
        cmd = [word for word in cmd if not word.startswith("LANG=")]
    return cmd


def call(lab, kind, user, via_job=None, v6=False, marker=None, timeout=60, no_lang=False,
         before_pam=None):
    """One account transaction through the driver service of kind. With
    via_job, a client in that job connects first; before_pam() then runs
    between the accept and the PAM call (to break something)."""
    driver = install(lab)
    service = SERVICES[kind]
    u = lab.user(user)
    argv = [driver]
    port = None
    if via_job is not None:
        port = free_port(v6)
        argv += ["-l", ("v6:%d" % port) if v6 else str(port)]
        if before_pam:
            argv.append("-w")
    if marker:
        argv += ["-m", marker]
    argv += [service, u]
    mark = lab.syslog_mark()
    start = time.monotonic()
    proc = subprocess.Popen(driver_command(lab, argv, no_lang), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            start_new_session=True)
    client = None
    try:
        if port is not None:
            first = proc.stdout.readline()
            assert first.strip() == "listening", (first, proc.stderr.read())
            srun = ["srun", "--jobid=%d" % via_job, "--overlap", "-N1", "-n1", "--quiet",
                    "python3", "-c", CLIENT, "::1" if v6 else "127.0.0.1", str(port)]
            client = subprocess.Popen(lab.command(srun, u), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd="/",
                                      start_new_session=True)
            second = proc.stdout.readline()
            assert second.strip() == "accepted", (second, proc.stderr.read())
            if before_pam:
                before_pam()
                mark = lab.syslog_mark()
                start = time.monotonic()
        out, err = proc.communicate(input="go\n" if before_pam else None, timeout=timeout)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        if client is not None:
            try:
                client.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
    assert proc.returncode == 0, (out, err)
    rc, messages, env, cgroup, seen = None, [], {}, [], False
    for line in out.splitlines():
        word, _sep, rest = line.partition(" ")
        if word == "rc":
            rc = int(rest)
        elif word == "msg":
            messages.append(rest.partition(" ")[2])
        elif word == "env":
            name, _sep, value = rest.partition("=")
            env[name] = value
        elif word == "cg":
            cgroup.append(rest)
        elif word == "marker":
            seen = rest == "yes"
    return Call(rc, messages, env, "\n".join(cgroup), seen,
                settle_syslog(lab, mark, proc.pid), elapsed)


LINE_RE = re.compile(r"(pam_slurm_adopt\[(\d+)\]|pam_call(?:\[(\d+)\])?): (.*)$")


def settle_syslog(lab, mark, pid, quiet=0.3, limit=3.0):
    """The lines of this driver process (pid) written after mark, once the
    file stops growing. The host lab's syslog is the machine's: other
    processes write there too."""
    end = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        size = lab.syslog_mark()
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.05)
    lines = []
    for line in lab.syslog_since(mark):
        match = LINE_RE.search(line)
        if match and (match.group(2) or match.group(3) or str(pid)) == str(pid):
            lines.append(match.group(4))
    return lines


def normaliser(lab, jobs):
    """Replace what differs between the two runs of a scenario (pids,
    ports, the driver's service names) and name the jobs."""
    names = {}
    for attr in ("alice", "bob_old", "bob_new"):
        job = getattr(jobs, attr, None)
        if job is not None:
            names[str(job)] = "<%s>" % attr

    def normalise(line):
        line = re.sub(r"adopt-drv-(c|py)", "adopt-drv", line)
        line = re.sub(r"\bport \d+", "port <port>", line)
        line = re.sub(r"\bProcess \d+", "Process <pid>", line)
        line = re.sub(r"\badopt \d+\b", "adopt <pid>", line)
        # a number on its own: not a part of an address (127.0.0.1 when a job is 127)
        return re.sub(r"(?<![:\w.])\d+(?![\w.:]\w)(?!\w)", lambda m: names.get(m.group(0), m.group(0)), line)
    return normalise


def compared_lines(lines):
    """Syslog lines both modules must write alike: the module's own lines
    (info and above). Not compared: debug lines (the C module's come mostly
    from libslurm's internals) and libslurm's plugin-loading notices
    ("cred/munge: init: Munge credential signature plugin loaded", 26.05)."""
    return [l for l in lines
            if not re.match(r"debug\d?: ", l) and not re.match(r"[\w-]+/[\w-]+: init: ", l)]
