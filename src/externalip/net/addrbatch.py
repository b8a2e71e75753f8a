"""Address requests in batches: add, renew and remove many addresses in a few system calls.

One pyroute2 request per address costs ~0.4 ms of CPU and a round trip
through the event loop: renewing 1,000 lifetimes that way dominated the idle
agent, and adding the 3,333 addresses of a dead node one by one took
seconds. These messages are always the same shape, so they are packed by
hand, sent in batches on a plain netlink socket and their acks read back;
each request still gets its own answer (errno per address).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from externalip.core.addresses import IPInterface
from externalip.net.kernel import IFA_F_NODAD, PROTO, RTM_DELADDR, RTM_NEWADDR

NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
# `ip addr add`: refused (EEXIST) if the address is there, whoever added it.
ADD = NLM_F_EXCL | NLM_F_CREATE
# `ip addr replace`: a new lifetime for an address we hold.
RENEW = NLM_F_REPLACE | NLM_F_CREATE
NLMSG_ERROR = 2
IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO, IFA_FLAGS, IFA_PROTO = 1, 2, 6, 8, 11
# Each ack is a separate skb of ~1 KiB true size in our receive buffer (default
# ~208 KiB): more than ~200 requests in flight overflow it (ENOBUFS).
_BATCH = 100

Item = tuple[int, IPInterface]  # (ifindex, address)


def _attr(kind: int, data: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(data), kind)
    return header + data + b"\0" * (-len(data) % 4)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                       seq, 0) + body


def _ifaddr(ifindex: int, interface: IPInterface) -> bytes:
    family = socket.AF_INET if interface.version == 4 else socket.AF_INET6
    body = struct.pack("=BBBBI", family, interface.network.prefixlen, 0, 0, ifindex)
    if interface.version == 4:
        body += _attr(IFA_LOCAL, interface.ip.packed)
    return body + _attr(IFA_ADDRESS, interface.ip.packed)


def newaddr_message(seq: int, ifindex: int, interface: IPInterface, valid: int,
                    preferred: int, *, mode: int = RENEW) -> bytes:
    """RTM_NEWADDR marked ours; `mode` ADD or RENEW (the flags `ip addr add/replace` send)."""
    # No duplicate address detection for IPv6: a VIP moves between nodes, and
    # a tentative address neither answers nor can be announced for ~1 s.
    flags = IFA_F_NODAD if interface.version == 6 else 0
    body = _ifaddr(ifindex, interface)
    body += _attr(IFA_CACHEINFO, struct.pack("=IIII", preferred, valid, 0, 0))
    body += _attr(IFA_FLAGS, struct.pack("=I", flags))
    body += _attr(IFA_PROTO, struct.pack("=B", PROTO))
    return _message(RTM_NEWADDR, mode, seq, body)


def deladdr_message(seq: int, ifindex: int, interface: IPInterface) -> bytes:
    """RTM_DELADDR, what `ip addr del` sends."""
    return _message(RTM_DELADDR, 0, seq, _ifaddr(ifindex, interface))


def run_batch(sock: socket.socket, items: list[Item],
              build: Callable[[int, Item], bytes]) -> dict[Item, int]:
    """Send build(seq, item) for every item, in batches; returns failures (-> errno)."""
    failed: dict[Item, int] = {}
    pending: dict[int, Item] = {}
    chunk = b""
    for seq, item in enumerate(items, start=1):
        pending[seq] = item
        chunk += build(seq, item)
        if len(pending) >= _BATCH or seq == len(items):
            sock.send(chunk)
            chunk = b""
            _read_acks(sock, pending, failed)
    return failed


def _read_acks(sock: socket.socket, pending: dict[int, Item], failed: dict[Item, int]) -> None:
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
