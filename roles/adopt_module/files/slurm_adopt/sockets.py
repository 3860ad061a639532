# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The socket API without the cost of socket.py.

socket.py imports enum and selectors, about 7 ms on every ssh login under
pam_python; the C extension _socket has everything this module uses
(socket objects with connect/sendall/recv/recvmsg/settimeout, inet_ntop,
getaddrinfo, CMSG_LEN and the constants).
"""

try:
    import _socket as socket
except ImportError:    # pragma: no cover - an interpreter without _socket
    import socket

__all__ = ["socket"]
