# SPDX-License-Identifier: GPL-3.0-or-later
"""The service's namespace join writes the flow's lines: through the
service interface (setns done by the C client) a login must log what the
pam_python module logs, in the C module's wording of the stepd's Slurm
version (REQUEST_GET_NS_FDS and setns(fd, type) from 25.11, "namespace
plugin" from 26.05; tests/unit/test_flow_log.py)."""

import os

import pytest

from slurm_adopt import flow as flow_mod
from slurm_adopt.flow import Adopter, run_safely
from slurm_adopt.log import Log
from slurm_adopt.options import parse_options
from slurm_adopt.service import ServiceAdopter
from slurm_adopt.stepd import setns

from test_flow import NODE, Ctx, node  # noqa: F401 pylint: disable=unused-import

CLONE_NEWNS = 0x00020000


class ClientCtx(Ctx):
    """The service's context as the flow sees it: the client commits, then
    does setns() itself (here in this process, as the client would)."""

    def commit(self, deadline):
        pass

    def setns(self, fd, nstype):
        setns(fd, nstype)


def transcript(node, adopter_class, ctx):  # noqa: F811
    opts = parse_options(["nodename=%s" % NODE, "log_level=debug5"])
    log = Log(to_syslog=False)
    adopter = adopter_class(opts, ctx, log, environ={"SLURM_CONF": str(node.conf)})
    rc = run_safely(adopter)
    return rc, log.lines


@pytest.mark.parametrize("version", [0x2600, 0x2C00, 0x2D00])
@pytest.mark.parametrize("what", ["no namespace", "setns fails", "request fails"])
def test_service_logs_the_namespace_lines_of_the_flow(node, monkeypatch, version, what):  # noqa: F811,E501
    monkeypatch.setattr(flow_mod, "callerid_rpc", None)    # one job: never asked
    r, w = os.pipe()
    try:
        kwargs = {}
        if what == "setns fails":                # a pipe is no namespace: EINVAL
            kwargs["namespaces"] = [(CLONE_NEWNS if version >= 0x2C00 else 0, r)]
        elif what == "request fails":
            kwargs["behaviour"] = "ns-refused"
        node.job(17, version=version, **kwargs)
        flow = transcript(node, Adopter, Ctx())
        service = transcript(node, ServiceAdopter, ClientCtx())
    finally:
        os.close(r)
        os.close(w)
    assert service == flow
    assert any("ns_fd" in text or "setns" in text for _level, text in flow[1]), flow
