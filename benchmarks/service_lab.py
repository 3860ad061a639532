# SPDX-License-Identifier: GPL-3.0-or-later
"""The adoption-service interface on a running test lab, set up and torn
down from the outside (the labs' own scripts are not changed).

For a lab (host 22.05, trixie 24.11, sid 26.05) it adds two sshd kinds next
to plain/c/py, each a copy of the lab's `plain` sshd and PAM service with the
C client (roles/adopt_module/files/client) as the last account line:

    svc       the client talks to the adoption service, started here from
              this checkout's roles/adopt_module/files (inside the lab's
              root for a chroot lab);
    svcchild  a client built with a socket path where nothing listens: every
              login runs the fallback child (python3 -I -S ... child).

Used by tests/node/test_service_node.py and benchmarks/login_latency.py.
Everything it creates lives under /var/lib/slurm-adopt-svc/<lab> (host path;
the same path inside a chroot lab's root) and /run/slurm-adopt-svc, plus one
read-only bind mount (<root>/opt/slurm-adopt-svc) for a chroot lab; close()
removes all of it.
"""

import os
import re
import shutil
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = os.path.join(REPO, "roles", "adopt_module", "files")
BUILD = os.path.join(FILES, "client", "build.sh")
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Ports next to each lab's own (host 2201-2204, trixie 2301-2303, sid 2401-2403).
PORTS = {"host": {"svc": 2205, "svcchild": 2206}, "trixie": {"svc": 2305, "svcchild": 2306},
         "sid": {"svc": 2405, "svcchild": 2406}}
KINDS = ("svc", "svcchild")
BASE = "/var/lib/slurm-adopt-svc"          # inside the lab's root
SOCKET = "/run/slurm-adopt-svc/adopt.sock"  # inside the lab's root
NO_SOCKET = "/run/slurm-adopt-svc/none.sock"
CLIENT_OPTIONS = ()


class ServiceLabError(RuntimeError):
    pass


def _wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise ServiceLabError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.05)


def _listening(port):
    with open("/proc/net/tcp") as handle:
        want = "0100007F:%04X" % port
        return any(line.split()[1] == want and line.split()[3] == "0A"
                   for line in handle.readlines()[1:])


class ServiceLab(object):
    """The svc and svcchild kinds of one lab (labctl.Lab)."""

    def __init__(self, lab, options=CLIENT_OPTIONS, workers=None):
        self.lab = lab
        self.options = list(options)
        self.workers = workers
        self.chroot = lab.root != "/"
        self.ports = dict(PORTS[lab.name])
        self.base = lab.host_path(os.path.join(BASE, lab.name))
        self.module_dir = "/opt/slurm-adopt-svc" if self.chroot else FILES   # inside the root
        self.service = None          # Popen of the adoption service
        self.sshd_pids = {}
        self.bound = False
        self.files = []              # host paths written outside self.base

    # ---------------------------------------------------------------- paths
    def inside(self, *parts):
        return os.path.join(BASE, self.lab.name, *parts)

    def host(self, path):
        return self.lab.host_path(path)

    def launcher(self):
        return os.path.join(self.module_dir, "slurm_adopt_service.py")

    def client_path(self, kind):
        return self.inside("pam_slurm_adopt_client_%s.so" % kind)

    def pam_service(self, kind):
        return "sshd-lab-%s" % kind

    def client_line(self, kind, options=()):
        return " ".join(["account", "required", self.client_path(kind),
                         "service=%s" % self.pam_service(kind)] + self.options + list(options))

    # ---------------------------------------------------------------- set up
    def up(self):
        try:
            self._up()
        except BaseException:
            self.close()
            raise
        return self

    def _up(self):
        for kind, port in self.ports.items():
            if _listening(port):
                raise ServiceLabError("port %d (%s) is in use: another run left it up?"
                                      % (port, kind))
        os.makedirs(os.path.join(self.base, "log"), exist_ok=True)
        os.makedirs(os.path.join(self.base, "bin"), exist_ok=True)
        os.makedirs(self.host(os.path.dirname(SOCKET)), mode=0o700, exist_ok=True)
        if self.chroot:
            self._bind_module()
        self._compile()
        for kind in KINDS:
            self._build(kind)
            self._pam_file(kind)
            self._sshd(kind)
        self.start_service()
        for kind, port in self.ports.items():
            self.lab.ports[kind] = port
            self.lab.pam_services[kind] = self.pam_service(kind)

    def _bind_module(self):
        target = self.host(self.module_dir)
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "--bind", FILES, target], check=True)
        self.bound = True
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)

    def _compile(self):
        """Byte-compile the package for the lab's python3, as the role does
        (the fallback child would compile it at every login otherwise)."""
        if not self.chroot:
            subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q",
                            os.path.join(FILES, "slurm_adopt")], check=True,
                           stdout=subprocess.DEVNULL)
            return
        scratch = self.host("/run/slurm-adopt-svc/compile")
        os.makedirs(scratch, exist_ok=True)
        subprocess.run(["mount", "--bind", FILES, scratch], check=True)
        try:
            subprocess.run(["chroot", self.lab.root, "/usr/bin/python3", "-m", "compileall", "-q",
                            "-d", os.path.join(self.module_dir, "slurm_adopt"),
                            "/run/slurm-adopt-svc/compile/slurm_adopt"], check=True,
                           stdout=subprocess.DEVNULL)
        finally:
            subprocess.run(["umount", scratch], check=False)
            os.rmdir(scratch)

    def _build(self, kind):
        sock = SOCKET if kind == "svc" else NO_SOCKET
        subprocess.run(["sh", BUILD, self.host(self.client_path(kind)), sock, "/usr/bin/python3",
                        self.launcher()], check=True)

    def _pam_file(self, kind):
        """The lab's plain PAM service plus the client as last account line."""
        with open(self.lab.pam_file("plain")) as handle:
            lines = handle.readlines()
        last = max(i for i, line in enumerate(lines) if re.match(r"\s*-?account\s", line))
        lines.insert(last + 1, self.client_line(kind) + "\n")
        path = self.host(os.path.join(self.lab.pam_dir, self.pam_service(kind)))
        with open(path + ".tmp", "w") as handle:
            handle.write("# written by benchmarks/service_lab.py (removed when it stops)\n")
            handle.writelines(lines)
        os.replace(path + ".tmp", path)
        self.files.append(path)

    def set_client_options(self, kind, *options):
        """Rewrite kind's client line with extra module options."""
        path = self.host(os.path.join(self.lab.pam_dir, self.pam_service(kind)))
        with open(path) as handle:
            lines = handle.readlines()
        index = [i for i, line in enumerate(lines) if self.client_path(kind) in line][0]
        lines[index] = self.client_line(kind, options) + "\n"
        with open(path + ".tmp", "w") as handle:
            handle.writelines(lines)
        os.replace(path + ".tmp", path)

    def _plain_config(self):
        """(config text, config path inside the root) of the lab's plain sshd."""
        if self.chroot:
            path = "/etc/ssh/sshd_config_lab_plain"
        else:
            path = os.path.join(os.path.dirname(self.lab.slurm_conf), "sshd-lab-plain.conf")
        with open(self.host(path)) as handle:
            return handle.read(), path

    def _sshd(self, kind):
        text, _path = self._plain_config()
        pidfile = self.inside("sshd-lab-%s.pid" % kind)
        text = re.sub(r"(?m)^Port \d+$", "Port %d" % self.ports[kind], text)
        text = re.sub(r"(?m)^PidFile .*$", "PidFile %s" % pidfile, text)
        text = re.sub(r"(?m)^PAMServiceName .*$", "PAMServiceName %s" % self.pam_service(kind),
                      text)
        conf = self.inside("sshd-lab-%s.conf" % kind)
        with open(self.host(conf), "w") as handle:
            handle.write("# written by benchmarks/service_lab.py\n" + text)
        binary = self.inside("bin", self.pam_service(kind))      # OpenSSH 9 names PAM by argv[0]
        if not os.path.islink(self.host(binary)):
            os.symlink("/usr/sbin/sshd", self.host(binary))
        prefix = ["env", "-i", "PATH=" + SYS_PATH, "LANG=C.UTF-8", "HOME=/root",
                  "SLURM_CONF=" + self.lab.slurm_conf]
        if self.chroot:
            prefix = ["chroot", self.lab.root] + prefix
        subprocess.run(prefix + [binary, "-t", "-f", conf], check=True)
        subprocess.run(["setsid"] + prefix + [binary, "-f", conf, "-E",
                                              self.inside("log", "sshd-lab-%s.log" % kind)],
                       check=True, stdin=subprocess.DEVNULL)
        _wait(lambda: _listening(self.ports[kind]), 15, "sshd %s on port %d"
              % (kind, self.ports[kind]))
        with open(self.host(pidfile)) as handle:
            self.sshd_pids[kind] = int(handle.read().strip())

    def start_service(self):
        argv = ["env", "-i", "PATH=" + SYS_PATH, "/usr/bin/python3", "-I", "-S", self.launcher(),
                "serve", "--socket", SOCKET, "--idle-exit", "0"]
        if self.workers:
            argv += ["--workers", str(self.workers)]
        if self.chroot:
            argv = ["chroot", self.lab.root] + argv
        log = open(os.path.join(self.base, "log", "service.log"), "ab")
        self.service = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        _wait(lambda: os.path.exists(self.host(SOCKET)) or self.service.poll() is not None, 15,
              "the adoption service's socket")
        if self.service.poll() is not None:
            raise ServiceLabError("the adoption service exited (%s): see %s"
                                  % (self.service.returncode,
                                     os.path.join(self.base, "log", "service.log")))
        return self.service

    def stop_service(self, timeout=30):
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGCONT)
            self.service.terminate()
            try:
                self.service.wait(timeout)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
        self.service = None
        if os.path.exists(self.host(SOCKET)):
            os.unlink(self.host(SOCKET))

    def service_pid(self):
        return self.service.pid if self.service and self.service.poll() is None else None

    # ---------------------------------------------------------------- tear down
    def close(self):
        self.stop_service()
        for kind, pid in self.sshd_pids.items():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            _wait(lambda: not _listening(self.ports[kind]), 15, "sshd %s to stop" % kind)
        self.sshd_pids = {}
        for kind in KINDS:
            self.lab.ports.pop(kind, None)
            self.lab.pam_services.pop(kind, None)
        for path in self.files:
            if os.path.exists(path):
                os.unlink(path)
        self.files = []
        if self.bound:
            subprocess.run(["umount", self.host(self.module_dir)], check=False)
            self.bound = False
            try:
                os.rmdir(self.host(self.module_dir))
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.host(os.path.dirname(SOCKET)), ignore_errors=True)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.close()
        return False
