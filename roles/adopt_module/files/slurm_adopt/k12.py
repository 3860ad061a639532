# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""KangarooTwelve (RFC 9861), the hash Slurm's hash/k12 plugin puts into the
munge credential of an RPC to bind it to the message body.

Written from the RFC: Keccak-p[1600, 12 rounds] as the sponge TurboSHAKE128
(rate 168 bytes), and K12's tree mode for inputs longer than one 8192-byte
chunk. A callerid message is 52 bytes, so a login hashes one block; pure
Python is fast enough for that (well under a millisecond here).
"""

import struct

_MASK = 0xFFFFFFFFFFFFFFFF
_RATE = 168                      # TurboSHAKE128: 1344-bit rate
_CHUNK = 8192

# Round constants of Keccak-f[1600]; Keccak-p[1600, 12] uses the last 12.
_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)[12:]

# rho rotation offsets and the pi lane order, lane index x + 5*y.
_ROT = (0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8,
        18, 2, 61, 56, 14)
# pi: lane (x, y) moves to (y, 2x + 3y); _DEST[x + 5*y] is its new index.
_DEST = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))


def _permute(a):
    """Keccak-p[1600, 12] on a list of 25 lanes, in place."""
    for rc in _RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK)
             for x in range(5)]
        b = [0] * 25
        for i in range(25):
            lane = a[i] ^ d[i % 5]
            r = _ROT[i]
            b[_DEST[i]] = ((lane << r) | (lane >> (64 - r))) & _MASK if r else lane
        for y in range(0, 25, 5):
            row = b[y:y + 5]
            for x in range(5):
                a[y + x] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5])
        a[0] ^= rc


def turboshake128(message, domain, length):
    """TurboSHAKE128(M, D, L): length bytes of output."""
    state = [0] * 25
    data = bytearray(message)
    data.append(domain)
    data.extend(b"\0" * (-len(data) % _RATE))
    data[-1] ^= 0x80
    for start in range(0, len(data), _RATE):
        lanes = struct.unpack_from("<21Q", data, start)
        for i in range(21):
            state[i] ^= lanes[i]
        _permute(state)
    out = bytearray()
    while True:
        out.extend(struct.pack("<21Q", *state[:21]))
        if len(out) >= length:
            return bytes(out[:length])
        _permute(state)


def _length_encode(value):
    raw = b""
    while value:
        raw = bytes((value & 0xFF,)) + raw
        value >>= 8
    return raw + bytes((len(raw),))


def k12(message, custom=b"", length=32):
    """KangarooTwelve(M, C, L)."""
    s = bytes(message) + bytes(custom) + _length_encode(len(custom))
    if len(s) <= _CHUNK:
        return turboshake128(s, 0x07, length)
    chunks = [s[i:i + _CHUNK] for i in range(0, len(s), _CHUNK)]
    node = bytearray(chunks[0])
    node.extend(b"\x03" + b"\0" * 7)
    for chunk in chunks[1:]:
        node.extend(turboshake128(chunk, 0x0B, 32))
    node.extend(_length_encode(len(chunks) - 1))
    node.extend(b"\xff\xff")
    return turboshake128(bytes(node), 0x06, length)
