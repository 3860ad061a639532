# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""slurm_adopt_service.py - the adoption service for the C PAM client.

    python3 -I -S /usr/lib/slurm-adopt/slurm_adopt_service.py serve
        the resident service (socket-activated by slurm-adopt.socket, or
        listening on --socket itself);
    python3 -I -S /usr/lib/slurm-adopt/slurm_adopt_service.py child
        one request on fd 0: what pam_slurm_adopt_client.so runs when the
        service cannot answer.

See docs/service.md of hpc.slurm_adopt.
"""

import os
import sys


def main():
    # Import the package next to this file, never from anywhere else; resolve
    # <dir>/current once, so the service imports one release only.
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    from slurm_adopt import service
    return service.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
