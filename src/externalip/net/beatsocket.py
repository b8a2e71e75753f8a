"""The heartbeat's UDP socket on one link: where beats go, and when they arrived.

Beats go to the link's IPv4 broadcast address (255.255.255.255 when the
address has none set; the socket is bound to the device either way), or,
on a link without IPv4, to ff02::1 through the link's interface index. The
socket asks the kernel to stamp each datagram on arrival (SO_TIMESTAMPNS),
so a reader that takes them in once per interval, or was stalled, still
knows how old each queued beat is.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import time
from collections.abc import Iterator

SIOCGIFBRDADDR = 0x8919
SO_TIMESTAMPNS = 35  # asm-generic/socket.h; also the control message type
_TIMESPEC = struct.Struct("@qq")
MAX_RECEIVE = 2048  # a beat is at most 1,452 bytes
SO_RCVBUFFORCE = 33
# 1,000 peers' beats of one interval, at the kernel's ~4 KiB accounting per datagram
RECEIVE_BUFFER = 4 << 20


def _broadcast_target(link: str, port: int) -> tuple[int, tuple[object, ...]]:
    """(family, destination): the link's IPv4 broadcast, or ff02::1 if it has no IPv4."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH14s", link.encode(), socket.AF_INET, b"\0" * 14)
        reply = fcntl.ioctl(probe.fileno(), SIOCGIFBRDADDR, ifreq)
        brd = socket.inet_ntoa(reply[20:24])
        return socket.AF_INET, (brd if brd != "0.0.0.0" else "255.255.255.255", port)
    except OSError:
        return socket.AF_INET6, ("ff02::1", port, 0, socket.if_nametoindex(link))
    finally:
        probe.close()


def _open_socket(link: str, port: int, family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _reserve(sock)
        if family == socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind(("0.0.0.0", port))
        else:
            index = socket.if_nametoindex(link)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.bind(("::", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _reserve(sock: socket.socket) -> None:
    """Room for a whole interval of beats: they are read once per interval."""
    try:  # beyond net.core.rmem_max: needs CAP_NET_ADMIN, which the agent has
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def beat_socket(link: str, port: int) -> tuple[socket.socket, tuple[object, ...]]:
    """A non-blocking socket bound to `link` and `port`, and the destination for beats."""
    family, target = _broadcast_target(link, port)
    return _open_socket(link, port, family), target


def received(sock: socket.socket) -> Iterator[tuple[bytes, float]]:
    """Every datagram queued on `sock`, with its age in seconds (since the kernel got it)."""
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(MAX_RECEIVE, 64)
        except (BlockingIOError, InterruptedError):
            return
        age = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(value)
                age = max(0.0, (time.time_ns() - (sec * 10**9 + nsec)) / 1e9)
        yield data, age
