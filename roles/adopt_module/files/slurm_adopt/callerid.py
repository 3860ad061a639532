# -*- coding: utf-8 -*-
# Copyright (c) hpc.slurm_adopt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The callerid RPC: which job owns the ssh connection, asked of the slurmd at the client."""

import os
import struct

import time

from . import munge
from .sockets import socket
from .constants import (AUTH_PLUGIN_MUNGE, HASH_PLUGIN_K12, HASH_PLUGIN_NONE, MAX_RPC_REPLY,
                        MUNGE_TIMEOUT, NO_VAL, PROTOCOL_22_05, PROTOCOL_25_11, PROTOCOL_VERSIONS,
                        REQUEST_NETWORK_CALLERID, RESPONSE_NETWORK_CALLERID, RESPONSE_SLURM_RC,
                        SLURM_NO_AUTH_CRED, SLURM_PACK_ADDRS, RpcError)
from .k12 import k12


class CallerConn(object):
    """callerid_conn_t: the ssh connection, seen from sshd. src = the ssh
    client (remote end), dst = sshd (local end). Addresses are 16 bytes in
    network order, IPv4 in the first four."""

    def __init__(self, ip_src, port_src, ip_dst, port_dst, af):
        self.ip_src = ip_src
        self.port_src = port_src
        self.ip_dst = ip_dst
        self.port_dst = port_dst
        self.af = af

    @property
    def src_text(self):
        if self.af == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, self.ip_src[:4])
        return socket.inet_ntop(socket.AF_INET6, self.ip_src)


def _hex_addr(text):
    """/proc/net/tcp address: each 32-bit word in host order, as hex."""
    raw = bytes.fromhex(text)
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    out = b"".join(struct.pack("=I", struct.unpack(">I", w)[0]) for w in words)
    return out.ljust(16, b"\0")


def _parse_line(line):
    """(inode, (local_addr16, local_port, remote_addr16, remote_port)) of
    one /proc/net/tcp line, None for the header or a malformed line."""
    fields = line.split()
    if len(fields) < 10:
        return None
    try:
        local, remote, inode = fields[1], fields[2], int(fields[9])
        laddr, lport = local.split(":")
        raddr, rport = remote.split(":")
        return inode, (_hex_addr(laddr), int(lport, 16), _hex_addr(raddr), int(rport, 16))
    except ValueError:
        return None


def parse_proc_net_tcp(text):
    """{inode: (local_addr16, local_port, remote_addr16, remote_port)}."""
    table = {}
    for line in text.splitlines()[1:]:
        parsed = _parse_line(line)
        if parsed is not None:
            table[parsed[0]] = parsed[1]
    return table


def find_inode(text, inode):
    """parse_proc_net_tcp(text).get(inode), without parsing every line: a
    node with thousands of connections (or TIME_WAIT entries) has a
    /proc/net/tcp of thousands of lines, and parsing them all costs
    milliseconds per login. Only the lines that contain the inode's digits
    as a whole field are parsed, and the inode field itself must match."""
    needle = " %d " % inode
    start = 0
    while True:
        pos = text.find(needle, start)
        if pos < 0:
            return None
        begin = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        parsed = _parse_line(text[begin:end if end >= 0 else len(text)])
        if parsed is not None and parsed[0] == inode:
            return parsed[1]
        start = pos + 1


SO_PROTOCOL = 38            # Linux socket(7) options, the same on every architecture
SO_DOMAIN = 39
_UNKNOWN = object()


def _own_socket_conn(fd):
    """For a socket fd of this very process: the CallerConn of a connected
    TCP socket, None for a socket that cannot be in /proc/net/tcp* (not
    TCP), _UNKNOWN when only the /proc tables can tell (a listening or
    unconnected TCP socket, or any error). Works on a dup() of fd, so the
    caller's descriptor is never touched."""
    try:
        dup = os.dup(fd)
    except OSError:
        return _UNKNOWN
    owner = None                        # the socket object that owns dup, if any
    try:
        sock = owner = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, dup)
        family = sock.getsockopt(socket.SOL_SOCKET, SO_DOMAIN)
        if family not in (socket.AF_INET, socket.AF_INET6):
            return None
        if (sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM
                or sock.getsockopt(socket.SOL_SOCKET, SO_PROTOCOL) != socket.IPPROTO_TCP):
            return None
        if family == socket.AF_INET6:   # addresses are parsed by the object's family
            owner = None
            sock.detach()
            sock = owner = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, 0, dup)
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except (OSError, socket.error):
            return _UNKNOWN                 # listening or not connected
        return CallerConn(socket.inet_pton(family, remote[0]).ljust(16, b"\0"), remote[1],
                          socket.inet_pton(family, local[0]).ljust(16, b"\0"), local[1], family)
    except (OSError, socket.error, ValueError, TypeError):
        return _UNKNOWN
    finally:
        if owner is not None:
            owner.close()
        else:
            os.close(dup)


def own_netinfo(pid="self", proc="/proc"):
    """callerid_get_own_netinfo(): the first socket fd of pid (in directory
    order) that is a TCP connection in /proc/net/tcp, then tcp6.

    In the process itself (pid "self", pam_python) a socket is first asked
    directly (getsockopt, getsockname, getpeername): a non-TCP socket is
    skipped and a connected TCP socket is the answer, without reading the
    /proc tables, which costs the kernel a walk of its whole connection
    table per read (5-10 ms here). Anything else falls back to the tables
    from that socket on."""
    fd_dir = os.path.join(proc, str(pid), "fd")
    fds = []
    for name in os.listdir(fd_dir):
        try:
            st = os.stat(os.path.join(fd_dir, name))
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o140000:
            fds.append((name, st.st_ino))
    if pid == "self" and proc == "/proc":
        while fds:
            found = _own_socket_conn(int(fds[0][0]))
            if found is _UNKNOWN:
                break
            if found is not None:
                return found
            fds.pop(0)
    if not fds:
        return None
    # Each file is read only when needed, as the C module does.
    tables = {}
    for _name, inode in fds:
        for fname, af in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
            if fname not in tables:
                try:
                    with open(os.path.join(proc, str(pid), "net", fname)) as handle:
                        tables[fname] = handle.read()
                except (IOError, OSError):
                    tables[fname] = ""
            entry = find_inode(tables[fname], inode)
            if entry is not None:
                laddr, lport, raddr, rport = entry
                return CallerConn(raddr, rport, laddr, lport, af)
    return None


def _pack16(value):
    return struct.pack(">H", value)


def _pack32(value):
    return struct.pack(">I", value & 0xFFFFFFFF)


def _packmem(data):
    return _pack32(len(data)) + data


def pack_callerid_body(conn):
    """_pack_network_callerid_msg (identical 20.11 ... 26.05): 52 bytes."""
    return (_packmem(conn.ip_src[:16].ljust(16, b"\0")) + _packmem(conn.ip_dst[:16].ljust(16, b"\0"))
            + _pack32(conn.port_src) + _pack32(conn.port_dst) + _pack32(conn.af))


def pack_header(version, msg_type, body_length, flags=0):
    """pack_header() for 22.05+ without forwarding: 16 bytes."""
    return (_pack16(version) + _pack16(flags) + _pack16(msg_type) + _pack32(body_length)
            + _pack16(0) + _pack16(0) + _pack16(0))


def body_hash(body, msg_type):
    """The munge payload that binds a message body (_compute_hash, 22.05+):
    hash type K12, then KangarooTwelve(body, custom = big-endian msg_type)."""
    return struct.pack(">B", HASH_PLUGIN_K12) + k12(body, _pack16(msg_type), 32)


def pack_callerid_request(version, credential, conn):
    """A whole REQUEST_NETWORK_CALLERID message with its length prefix."""
    body = pack_callerid_body(conn)
    auth = _pack32(AUTH_PLUGIN_MUNGE) + _packmem(credential + b"\0")
    msg = pack_header(version, REQUEST_NETWORK_CALLERID, len(body)) + auth + body
    return _pack32(len(msg)) + msg


class _Reader(object):
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, size):
        if self.pos + size > len(self.data):
            raise RpcError("truncated reply (wanted %d bytes at offset %d of %d)"
                           % (size, self.pos, len(self.data)))
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def mem(self):
        return self.take(self.u32())

    def string(self):
        raw = self.mem()
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace") if raw else None


def _skip_header_rest(reader, version, flags):
    """forward, ret_list and orig_addr of a 22.05 ... 26.05 header
    (unpack_header, slurm_unpack_addr_no_alloc)."""
    forward_cnt = reader.u16()
    if forward_cnt:
        reader.string()                          # nodelist
        reader.u32()                             # timeout
        reader.u16()                             # tree width
        if version >= PROTOCOL_VERSIONS["23.11"] and flags & SLURM_PACK_ADDRS:
            reader.string()                      # net_cred
        if version >= PROTOCOL_VERSIONS["24.11"]:
            reader.u16()                         # tree depth
    if reader.u16():
        raise RpcError("reply carries a ret_list, which a callerid reply never has")
    family = reader.u16()
    if family == socket.AF_INET:
        reader.take(4 + 2)
    elif family == socket.AF_INET6:
        if len(reader.mem()) != 16:
            raise RpcError("reply header has a bad IPv6 address")
        reader.u16()


class Reply(object):
    """A parsed reply: header fields, the auth credential (None when the
    slurmd sent none, SLURM_NO_AUTH_CRED) and the raw body."""

    def __init__(self, version, msg_type, credential, body):
        self.version = version
        self.msg_type = msg_type
        self.credential = credential
        self.body = body


def parse_reply(message):
    """Header, auth section and body of a reply (without the length prefix)."""
    reader = _Reader(message)
    version = reader.u16()
    if version < PROTOCOL_22_05:
        raise RpcError("reply has unsupported protocol version 0x%04x" % version)
    flags = reader.u16()
    msg_type = reader.u16()
    body_length = reader.u32()
    _skip_header_rest(reader, version, flags)
    credential = None
    if not flags & SLURM_NO_AUTH_CRED:
        plugin = reader.u32()
        if plugin != AUTH_PLUGIN_MUNGE:
            raise RpcError("reply has auth plugin %d, not munge" % plugin)
        credential = reader.mem().split(b"\0", 1)[0]
    body = reader.take(body_length)
    return Reply(version, msg_type, credential, body)


def unpack_callerid_body(reply):
    """(job_id, node_name) of a reply, job_id NO_VAL when the remote slurmd
    cannot tell."""
    body = _Reader(reply.body)
    if reply.msg_type == RESPONSE_NETWORK_CALLERID:
        if reply.version >= PROTOCOL_25_11:
            body.u64()               # sluid
            job_id = body.u32()
            body.u32()               # step id
            body.u32()               # het component
        else:
            job_id = body.u32()
        body.u32()                   # return code (never set by slurmd)
        return job_id, body.string()
    if reply.msg_type == RESPONSE_SLURM_RC:
        rc = body.u32()
        if rc:
            raise RpcError("remote slurmd answered with error %d" % rc)
        # The C client returns success here without a job id (it then uses
        # an uninitialised value); "unknown" is the only correct reading.
        return NO_VAL, None
    raise RpcError("unexpected reply message type %d" % reply.msg_type)


def unpack_callerid_response(message):
    """Parse a reply (without the length prefix), without checking its
    credential. Returns (job_id, node_name)."""
    return unpack_callerid_body(parse_reply(message))


def check_reply_hash(reply, payload, block_zero_hash, block_null_hash):
    """_check_hash(): the payload of the reply's credential must bind the
    body (K12), or be the "no hash" form unless block_zero_hash is set."""
    if not payload:
        if block_null_hash:
            raise RpcError("reply credential carries no hash (block_null_hash)")
        return
    if payload[:1] == struct.pack(">B", HASH_PLUGIN_NONE):
        if block_zero_hash or payload != struct.pack(">BH", HASH_PLUGIN_NONE, reply.msg_type):
            raise RpcError("reply credential carries no valid hash")
        return
    if payload[:1] != struct.pack(">B", HASH_PLUGIN_K12):
        raise RpcError("reply hash type %d is not supported" % bytearray(payload)[0])
    if payload != body_hash(reply.body, reply.msg_type):
        raise RpcError("reply body does not match its credential's hash")


def verify_reply(reply, munge_socket, end, trusted_uids, log, block_zero_hash, block_null_hash):
    """Check the reply as the C client does (auth_g_verify, then
    _check_hash): munged must decode its credential, and the credential's
    payload must bind the body. A reply without a credential
    (SLURM_NO_AUTH_CRED, what 26.05's slurmd sends) is taken as it is, as
    Slurm 23.11 and later take it. We also want the credential to come from
    root or a Slurm user (the C client does not look)."""
    if reply.credential is None:
        return
    left = end - time.monotonic()
    if left <= 0:
        raise RpcError("no time left to check the reply's credential")
    decoded = munge.decode(reply.credential, munge_socket, min(MUNGE_TIMEOUT, left))
    if decoded.error == munge.EMUNGE_CRED_REPLAYED:
        # Debian builds with --enable-multiple-slurmd, whose auth/munge
        # accepts a replayed credential.
        log.debug2("We had a replayed cred, but this is expected in multiple slurmd mode.")
    elif decoded.error:
        raise RpcError("reply credential is invalid: %s"
                       % munge.ERRORS.get(decoded.error, "munge error %d" % decoded.error))
    if decoded.uid not in trusted_uids:
        raise RpcError("reply credential is from uid %u, not from root or a Slurm user"
                       % decoded.uid)
    check_reply_hash(reply, decoded.payload, block_zero_hash, block_null_hash)


def munge_encode(payload, socket_path, timeout):
    """A munge credential over payload from the local munged, time-bounded
    (munge.encode: munged's protocol over its socket, no libmunge)."""
    return munge.encode(payload, socket_path, timeout)


class _Deadline(object):
    def __init__(self, end):
        self.end = end

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        return left


def callerid_rpc(conn, port, version, munge_socket, timeout, end, log, trusted_uids=(0,),
                 block_zero_hash=False, block_null_hash=False):
    """Ask the slurmd at the ssh client's address which job owns the
    connection. The whole exchange (credential, connect, send, every read
    and the check of the reply) ends by `end` (time.monotonic()) and within
    `timeout` seconds; the reply may be at most MAX_RPC_REPLY bytes.
    Returns (job_id or NO_VAL, remote node name)."""
    end = min(end, time.monotonic() + timeout)
    clock = _Deadline(end)
    body = pack_callerid_body(conn)
    try:
        credential = munge_encode(body_hash(body, REQUEST_NETWORK_CALLERID), munge_socket,
                                  min(MUNGE_TIMEOUT, clock.left()))
    except socket.timeout:
        raise RpcError("no time left for the callerid RPC")
    request = pack_callerid_request(version, credential, conn)
    if conn.af == socket.AF_INET6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        address = (socket.inet_ntop(socket.AF_INET6, conn.ip_src), port, 0, 0)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (socket.inet_ntop(socket.AF_INET, conn.ip_src[:4]), port)
    try:
        sock.settimeout(clock.left())
        sock.connect(address)
        sock.settimeout(clock.left())
        sock.sendall(request)
        size = struct.unpack(">I", _recv_all(sock, 4, clock))[0]
        if size > MAX_RPC_REPLY:
            raise RpcError("reply of %d bytes is longer than a callerid reply can be" % size)
        reply = parse_reply(_recv_all(sock, size, clock))
    except socket.timeout:
        raise RpcError("no answer from slurmd at %s port %d within %.1fs"
                       % (address[0], port, timeout))
    except (OSError, socket.error) as exc:
        raise RpcError("slurmd at %s port %d: %s" % (address[0], port, exc))
    finally:
        sock.close()
    verify_reply(reply, munge_socket, end, trusted_uids, log, block_zero_hash, block_null_hash)
    return unpack_callerid_body(reply)


def _recv_all(sock, size, clock):
    chunks, got = [], 0
    while got < size:
        sock.settimeout(clock.left())
        chunk = sock.recv(size - got)
        if not chunk:
            raise RpcError("connection closed after %d of %d bytes" % (got, size))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
