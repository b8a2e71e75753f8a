"""A hostile API path for one node: the API proxy's fault mode (issue 12, item 9).

Proxies, load balancers and an overloaded API server answer in ways a
client library does not expect: an HTML 502 page, a 500, a 429 with
Retry-After, a JSON body cut off in the middle, a reset connection, an answer
two seconds late. In this mode the node's API proxy terminates TLS itself
(with the control plane's serving certificate, which the lab's kubeconfigs
already trust for 127.0.0.1), reads each request's head and, with
probability `rate`, answers it with one of those faults instead of (or, for
truncation and latency, on top of) the API server's answer. Each connection
carries one request (`Connection: close` is forced), so every request is
judged; everything else, watches included, is relayed as the API server
sends it. `script` replays a fixed sequence of faults instead of drawing
them at random (for tests that need each fault exactly).
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FAULTS = ("html502", "truncated", "500", "429", "reset", "latency")
LATENCY = 2.0
HTML = (b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
        b"Gateway</h1></center><hr><center>nginx</center></body></html>\n")


@dataclass
class Chaos:
    """What to inject: at `rate` (0..1) one of `faults`, or the `script` in order."""

    rate: float = 0.3
    faults: tuple[str, ...] = FAULTS
    script: list[str] = field(default_factory=list)
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}: use {', '.join(FAULTS)}")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str:
        """The fault for the next request ("" for none); counts both."""
        with self._lock:
            self.requests += 1
            if self.script:
                fault = self.script.pop(0)
            elif self.faults and self._random.random() < self.rate:
                fault = self._random.choice(self.faults)
            else:
                fault = ""
            if fault:
                self.injected[fault] = self.injected.get(fault, 0) + 1
            return fault


class ChaosServer:
    """Serves one client connection of the proxy in fault mode."""

    def __init__(self, chaos: Chaos, cert: Path, key: Path, ca: Path, target_port: int) -> None:
        self.chaos = chaos
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(str(cert), str(key))
        self._server_ctx.set_alpn_protocols(["http/1.1"])
        self._client_ctx = ssl.create_default_context(cafile=str(ca))
        self._target_port = target_port

    def serve(self, raw: socket.socket, stop: threading.Event) -> None:
        try:
            raw.settimeout(30)
            client = self._server_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        try:
            head, body = _read_request(client)
            if head:
                self._answer(client, head, body, stop)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _answer(self, client: ssl.SSLSocket, head: bytes, body: bytes,
                stop: threading.Event) -> None:
        fault = self.chaos.draw()
        if fault == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if fault == "html502":
            client.sendall(_response(502, "Bad Gateway", "text/html", HTML))
            return
        if fault == "500":
            client.sendall(_response(500, "Internal Server Error", "application/json",
                                     _status(500, "InternalError", "injected by the lab")))
            return
        if fault == "429":
            client.sendall(_response(429, "Too Many Requests", "application/json",
                                     _status(429, "TooManyRequests", "injected by the lab"),
                                     extra="Retry-After: 1\r\n"))
            return
        if fault == "latency":
            time.sleep(LATENCY)
        self._relay(client, head, body, truncate=fault == "truncated", stop=stop)

    def _relay(self, client: ssl.SSLSocket, head: bytes, body: bytes, *, truncate: bool,
               stop: threading.Event) -> None:
        raw = socket.create_connection(("127.0.0.1", self._target_port), timeout=10)
        with self._client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as upstream:
            upstream.sendall(_close_after(head) + body)
            upstream.settimeout(1.0)
            sent, header_end = 0, -1
            seen = b""
            while not stop.is_set():
                try:
                    data = upstream.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                if truncate:
                    if header_end < 0:
                        seen += data
                        header_end = seen.find(b"\r\n\r\n")
                    if header_end >= 0 and sent + len(data) > header_end + 40:
                        # the head and a few bytes of the body, then the connection ends
                        client.sendall(data[:max(0, header_end + 40 - sent)])
                        return
                client.sendall(data)
                sent += len(data)


def _read_request(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
        if len(data) > 1 << 20:
            raise ValueError("request head too long")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n", body


def _close_after(head: bytes) -> bytes:
    """The same request head, asking the API server to close after answering."""
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n")
             if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _status(code: int, reason: str, message: str) -> bytes:
    return (f'{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}",'
            f'"reason":"{reason}","code":{code}}}').encode()


def _response(code: int, phrase: str, ctype: str, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {code} {phrase}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n").encode() + body
