# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the molecule testinfra suites (podman:// backend)."""

import json
import os
import pathlib
import re
import shlex
import time

import pytest
import testinfra.utils.ansible_runner

REPO = pathlib.Path(
    os.environ.get("MOLECULE_PROJECT_DIRECTORY") or pathlib.Path(__file__).resolve().parents[3]
)


def collection_dir():
    """The hpc.slurm_adopt that converge used.

    Molecule installs the collection it builds from the work tree into a
    directory of ANSIBLE_COLLECTIONS_PATH; compare against that copy (the work
    tree may have moved on while the scenario ran), else the work tree.
    """
    entries = os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep)
    home = os.environ.get("ANSIBLE_HOME") or os.path.expanduser("~/.ansible")
    entries.append(os.path.join(home, "collections"))
    for entry in entries:
        for base in (pathlib.Path(entry), pathlib.Path(entry) / "ansible_collections"):
            candidate = base / "hpc" / "slurm_adopt"
            if entry and (candidate / "roles" / "adopt_module" / "files").is_dir():
                return candidate
    return REPO


MODULE_SRC = collection_dir() / "roles" / "adopt_module" / "files"
DENY_MESSAGE = "Access denied by pam_slurm_adopt: you have no active jobs on this node"
SSH_OPTS = "-o BatchMode=yes -o ConnectTimeout=20 -o LogLevel=INFO"


def molecule_hosts():
    """podman://NAME for every instance of the scenario's inventory."""
    names = testinfra.utils.ansible_runner.AnsibleRunner(
        os.environ["MOLECULE_INVENTORY_FILE"]
    ).get_hosts("all")
    return ["podman://" + name for name in names]


def interface_of(name):
    """The interface the inventory asks for on instance `name`
    (adopt_module_interface; auto is pam_python on these Debian nodes)."""
    variables = testinfra.utils.ansible_runner.AnsibleRunner(
        os.environ["MOLECULE_INVENTORY_FILE"]
    ).get_variables(name)
    value = variables.get("adopt_module_interface", "auto")
    return "pam_python" if value == "auto" else value


def interface(host):
    """interface_of() the testinfra host."""
    return interface_of(host.backend.name)


def wait_for(what, probe, timeout=60.0, interval=0.5):
    """Call probe() until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def ssh(host, user, command):
    """ssh USER@localhost COMMAND inside the container, as that user."""
    return host.run(
        "runuser -u %s -- ssh %s %s@localhost %s"
        % (user, SSH_OPTS, user, shlex.quote(command))
    )


DUMP_TREE = (
    "import json,os,sys; d=sys.argv[1]; out={}\n"
    "for n in sorted(os.listdir(d)):\n"
    "    p=os.path.join(d,n)\n"
    "    if os.path.isfile(p):\n"
    "        out[p]=open(p,encoding='utf-8',errors='replace').read()\n"
    "print(json.dumps(out))"
)


def read_remote(host, directory="/etc/pam.d"):
    """A read(path) -> text or None for pamstack.PamTree.

    The whole directory comes over in one podman exec (one per file would
    cost ~0.1 s each); paths outside it are read one by one.
    """
    files = json.loads(host.check_output("python3 -c %s %s" % (shlex.quote(DUMP_TREE), directory)))

    def read(path):
        if path in files:
            return files[path]
        handle = host.file(path)
        if not handle.exists:
            return None
        return handle.content_string

    return read


def remote_files(host, paths):
    """path -> (owner, group, mode, sha256) for existing regular files, one exec."""
    script = (
        "import hashlib,json,os,pwd,grp,sys; out={}\n"
        "for p in sys.argv[1:]:\n"
        "    if os.path.isfile(p):\n"
        "        st=os.stat(p)\n"
        "        out[p]=[pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,"
        " st.st_mode & 0o7777, hashlib.sha256(open(p,'rb').read()).hexdigest()]\n"
        "print(json.dumps(out))"
    )
    quoted = " ".join(shlex.quote(p) for p in paths)
    return json.loads(host.check_output("python3 -c %s %s" % (shlex.quote(script), quoted)))


class Job:
    """A running batch job of a user, with the paths pam_slurm_adopt uses."""

    def __init__(self, host, user, jobid, node):
        self.host = host
        self.user = user
        self.jobid = jobid
        self.node = node
        self.uid = int(host.check_output("id -u %s" % user))

    @property
    def extern_cgroup(self):
        """The freezer cgroup (relative to the hierarchy) of the extern step."""
        return "/slurm_%s/uid_%d/job_%d/step_extern" % (self.node, self.uid, self.jobid)

    def state(self):
        """squeue's state of the job ('' once it is gone)."""
        return self.host.run("squeue -h -j %d -o %%T" % self.jobid).stdout.strip()

    def step_pids(self, step="extern"):
        """Pids scontrol listpids reports for one step of the job."""
        out = self.host.check_output("scontrol listpids %d" % self.jobid)
        pids = set()
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == step and fields[0].isdigit():
                pids.add(int(fields[0]))
        return pids


def submit_job(host, user, seconds=600):
    """sbatch a sleep job as user and wait until it runs with its extern step."""
    node = host.check_output("hostname -s")
    out = host.check_output(
        "runuser -u %s -- sbatch --chdir=/tmp --output=/dev/null --job-name=molecule-adopt"
        " --wrap='sleep %d'" % (user, seconds)
    )
    match = re.search(r"Submitted batch job (\d+)", out)
    assert match, out
    job = Job(host, user, int(match.group(1)), node)
    wait_for("job %d RUNNING" % job.jobid, lambda: job.state() == "RUNNING")
    # the extern step (PrologFlags=Contain) gets its cgroup a moment after RUNNING
    wait_for(
        "the extern step cgroup of job %d" % job.jobid,
        lambda: host.file("/sys/fs/cgroup/freezer" + job.extern_cgroup).is_directory,
    )
    return job
