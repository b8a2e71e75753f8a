"""Lifetime renewals of many addresses in a few system calls.

With 1,000 addresses renewed every lifetime/3, one pyroute2 request per
address (~0.4 ms of CPU each) dominated the idle agent's CPU. These messages
are always the same shape, so they are packed by hand, sent in batches on a
plain netlink socket and their acks read back (Netlink.refresh_many).
"""

from __future__ import annotations

import socket
import struct

from externalip.core.addresses import IPInterface
from externalip.net.kernel import IFA_F_NODAD, PROTO, RTM_NEWADDR

NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
NLMSG_ERROR = 2
IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO, IFA_FLAGS, IFA_PROTO = 1, 2, 6, 8, 11
# Each ack is a separate skb of ~1 KiB true size in our receive buffer (default
# ~208 KiB): more than ~200 requests in flight overflow it (ENOBUFS).
_BATCH = 100


def _attr(kind: int, data: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(data), kind)
    return header + data + b"\0" * (-len(data) % 4)


def newaddr_message(
    seq: int, ifindex: int, interface: IPInterface, valid: int, preferred: int
) -> bytes:
    """RTM_NEWADDR with NLM_F_REPLACE|CREATE, the same request `ip addr replace` sends."""
    ip = interface.ip.packed
    family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    flags = IFA_F_NODAD if interface.version == 6 else 0
    body = struct.pack("=BBBBI", family, interface.network.prefixlen, 0, 0, ifindex)
    if interface.version == 4:
        body += _attr(IFA_LOCAL, ip)
    body += _attr(IFA_ADDRESS, ip)
    body += _attr(IFA_CACHEINFO, struct.pack("=IIII", preferred, valid, 0, 0))
    body += _attr(IFA_FLAGS, struct.pack("=I", flags))
    body += _attr(IFA_PROTO, struct.pack("=B", PROTO))
    header = struct.pack("=IHHII", 16 + len(body), RTM_NEWADDR,
                         NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE, seq, 0)
    return header + body


def renew_batch(
    sock: socket.socket, items: list[tuple[int, IPInterface]], valid: int, preferred: int
) -> dict[tuple[int, IPInterface], int]:
    failed: dict[tuple[int, IPInterface], int] = {}
    pending: dict[int, tuple[int, IPInterface]] = {}
    chunk = b""
    for seq, item in enumerate(items, start=1):
        pending[seq] = item
        chunk += newaddr_message(seq, item[0], item[1], valid, preferred)
        if len(pending) >= _BATCH or seq == len(items):
            sock.send(chunk)
            chunk = b""
            _read_acks(sock, pending, failed)
    return failed


def _read_acks(
    sock: socket.socket,
    pending: dict[int, tuple[int, IPInterface]],
    failed: dict[tuple[int, IPInterface], int],
) -> None:
    while pending:
        data = sock.recv(1 << 16)
        while len(data) >= 16:
            length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
            if kind == NLMSG_ERROR and seq in pending:
                (code,) = struct.unpack_from("=i", data, 16)
                item = pending.pop(seq)
                if code:
                    failed[item] = -code
            data = data[(length + 3) & ~3:] if length else b""
