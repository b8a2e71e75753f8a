"""Network-namespace toolkit for tests and the lab: namespaces, veths, captures.

Everything created through a `NetnsSet` is recorded and removed by `close()`
(in reverse order), also when the test failed, so a run leaves nothing behind.
Names carry the caller's unique prefix; interface names must fit in 15 bytes.
Code can run *inside* a namespace in two ways: a subprocess (`exec`/`popen`,
i.e. `ip netns exec`, exactly how a hostNetwork program sees the node) or, for
a raw capture socket, the current thread entering it briefly (`entered`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
ETH_P_ALL = 0x0003


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the body with this thread in `netns`; sockets made there stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def ip(*args: str, netns: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class NetnsSet:
    """Namespaces and links of one test; `close()` removes all of them."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._undo: list[Callable[[], Any]] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> NetnsSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        ip("netns", "add", name)
        self._undo.append(lambda: ip("netns", "del", name, check=False))
        ip("link", "set", "lo", "up", netns=name)
        return name

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        """A veth pair, one end in each namespace, both up. Deleting a namespace removes it."""
        ip("link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b,
           "netns", ns_b)
        ip("link", "set", name_a, "up", netns=ns_a)
        ip("link", "set", name_b, "up", netns=ns_b)

    def bridge(self, netns: str, name: str) -> None:
        ip("link", "add", name, "type", "bridge", netns=netns)
        ip("link", "set", name, "up", netns=netns)

    def addr(self, netns: str, dev: str, cidr: str, *extra: str) -> None:
        ip("addr", "add", cidr, "dev", dev, *extra, netns=netns)

    def exec(self, netns: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], check=False,
                              capture_output=True, text=True)

    def popen(self, netns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        """A process inside the namespace, killed at `close()` if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], **kw)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self._procs.clear()
        while self._undo:
            self._undo.pop()()


class Capture:
    """Frames received on one interface of a namespace (AF_PACKET, all protocols)."""

    def __init__(self, netns: str, dev: str) -> None:
        with entered(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((dev, 0))
        self.frames: list[bytes] = []

    def wait_for(self, match: Callable[[bytes], Any], within: float = 10.0) -> Any:
        """The first result of `match(frame)` that is truthy, reading until `within`."""
        for frame in self.frames:
            found = match(frame)
            if found:
                return found
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                break
            frame = self.sock.recv(65535)
            self.frames.append(frame)
            found = match(frame)
            if found:
                return found
        return None

    async def until(self, match: Callable[[bytes], Any], within: float = 10.0) -> Any:
        """`wait_for` without blocking the event loop (the sender may run in it)."""
        return await asyncio.to_thread(self.wait_for, match, within)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
