"""Reach the API server from inside a network namespace.

A program in a node namespace (like a hostNetwork pod) sees only that
namespace's loopback, while the control plane listens on the root
namespace's. This proxy listens on 127.0.0.1:<port> *inside* the namespace
and forwards each connection to the API server in the root namespace: a
thread enters the namespace with setns(2) just long enough to create the
listening socket, which stays bound to that namespace afterwards.

Stopping the proxy cuts the node off from the API while its data plane stays
up: the lab's "partitioned node". Setting `latency` delays everything the API
server sends by that many seconds (requests' answers and watch events alike,
each chunk by the same amount, none queued behind another): the slow API.
Setting `chaos` (externalip_lab.apichaos) makes it a hostile API path: HTML
502s, 500s, 429s, truncated JSON, resets and latency, at random or scripted.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import selectors
import socket
import threading
import time
from types import TracebackType

from externalip_lab.apichaos import ChaosServer

_NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns arrived in Python 3.12; we support 3.11.
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in_namespace(netns: str, port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:port in the named namespace."""
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        # setns changes only the calling thread's namespace; this thread ends
        # right after, so no other code ever runs in the wrong namespace.
        try:
            with open(f"{_NETNS_DIR}/{netns}") as target:
                _setns(target.fileno())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            result.append(sock)
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=create, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class ApiProxy:
    def __init__(self, netns: str, target_port: int, listen_port: int = 6443) -> None:
        self.netns = netns
        self.target_port = target_port
        self.listen_port = listen_port
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.latency = 0.0
        # the fault mode (apichaos): TLS ends here and requests are judged one by one
        self.chaos: ChaosServer | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ApiProxy:
        self._stop.clear()
        self._listener = listen_in_namespace(self.netns, self.listen_port)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"apiproxy-{self.netns}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection (clients see resets)."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> ApiProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            chaos = self.chaos
            if chaos is not None:
                with self._lock:
                    self._conns.add(client)
                threading.Thread(target=self._serve_chaos, args=(chaos, client),
                                 daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _serve_chaos(self, chaos: ChaosServer, client: socket.socket) -> None:
        try:
            chaos.serve(client, self._stop)
        finally:
            with self._lock:
                self._conns.discard(client)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Copy both ways; what comes from upstream (b) waits `latency` first."""
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        try:
            while not self._stop.is_set():
                wait = 1.0 if not delayed else max(0.0, delayed[0][0] - time.monotonic())
                for key, _ in sel.select(timeout=min(1.0, wait)):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is b and (self.latency or delayed):
                        delayed.append((time.monotonic() + self.latency, data))
                    else:
                        key.data.sendall(data)
                while delayed and delayed[0][0] <= time.monotonic():
                    a.sendall(delayed.popleft()[1])
        except OSError:
            pass
        finally:
            sel.close()
            with self._lock:
                for s in (a, b):
                    self._conns.discard(s)
                    s.close()
