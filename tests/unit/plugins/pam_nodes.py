# SPDX-License-Identifier: GPL-3.0-or-later
"""Node trees for the PAM editor tests: a distribution's /etc/pam.d (or a
synthetic one), the modules and programs the editor checks for, and users
(root, the Ansible user in wheel, an ordinary user) in the tree's own
/etc/passwd and /etc/group, as pam_adopt reads them for root=<tree>.

The real-libpam guard runs this machine's modules on these trees; modules
the trees name that this machine does not have (pam_sss, pam_pwquality,
...), and pam_sepermit (it answers PAM_SERVICE_ERR without SELinux), are
replaced by the real pam_permit.so there (``overlay``): "the directory
knows every user and says yes"."""

import glob
import os
import re

from conftest import FIXTURES, make_root

MODULE_DIR = '/lib/x86_64-linux-gnu/security'
PERMIT = os.path.join(MODULE_DIR, 'pam_permit.so')
FAKE_MODULES = ('pam_python.so', 'pam_exec.so', 'pam_access.so', 'pam_listfile.so', 'pam_unix.so', 'pam_permit.so')
ANSIBLE_USER = 'ansible'

PASSWD = ('root:x:0:0:root:/root:/bin/bash\n'
          'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n'
          'ansible:x:1000:1000:Ansible:/home/ansible:/bin/bash\n'
          'alice:x:1001:1001:Alice:/home/alice:/bin/bash\n')
GROUP = 'root:x:0:\nwheel:x:10:ansible\nansible:x:1000:\nalice:x:1001:\n'
SHADOW = 'root:*:19000:0:99999:7:::\nansible:*:19000:0:99999:7:::\nalice:*:19000:0:99999:7:::\n'


def write(root, path, text):
    host = os.path.join(root, path.lstrip('/'))
    if not os.path.isdir(os.path.dirname(host)):
        os.makedirs(os.path.dirname(host))
    with open(host, 'w') as handle:
        handle.write(text)
    return host


def read(root, path):
    with open(os.path.join(root, path.lstrip('/'))) as handle:
        return handle.read()


def add_users(root, passwd=PASSWD, group=GROUP, shadow=SHADOW, login_defs=None):
    write(root, '/etc/passwd', passwd)
    write(root, '/etc/group', group)
    write(root, '/etc/shadow', shadow)
    if login_defs is not None:
        write(root, '/etc/login.defs', login_defs)
    return root


def node(base, distro, users=True, **kwargs):
    """A distribution tree with users, every module the editor writes."""
    kwargs.setdefault('modules', FAKE_MODULES)
    root = make_root(base, distro, **kwargs)
    if users:
        add_users(root)
    return root


def synthetic(base, files, users=True, vendor=None):
    """A node whose /etc/pam.d holds ``files`` ({name: text})."""
    root = str(base)
    for name, text in files.items():
        write(root, '/etc/pam.d/' + name, text)
    for name, text in (vendor or {}).items():
        write(root, '/usr/lib/pam.d/' + name, text)
    secdir = os.path.join(root, 'lib', 'x86_64-linux-gnu', 'security')
    os.makedirs(secdir)
    for name in FAKE_MODULES:
        open(os.path.join(secdir, name), 'w').close()
    write(root, '/usr/bin/python3', '')
    write(root, '/usr/lib/slurm-adopt/pam_slurm_adopt.py', '')
    if users:
        add_users(root)
    return root


def missing_modules():
    """Modules named by the fixture trees that this machine lacks, plus
    pam_sepermit: {name: pam_permit.so}."""
    names = set(['pam_sepermit.so', 'pam_sss.so', 'pam_ldap.so', 'pam_winbind.so', 'pam_krb5.so'])
    for path in glob.glob(os.path.join(FIXTURES, '*', '*')):
        with open(path) as handle:
            names.update(re.findall(r'\b(pam_[A-Za-z0-9_]+\.so)\b', handle.read()))
    return dict((n, PERMIT) for n in sorted(names)
                if n == 'pam_sepermit.so' or not os.path.exists(os.path.join(MODULE_DIR, n)))
