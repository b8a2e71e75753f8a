"""/metrics, /healthz and /readyz on small HTTP servers.

A hand-rolled HTTP/1.0 responder on asyncio: the programs are asyncio
already, the endpoints are three GETs, and a web framework would be the
largest dependency of the project for it.

Hardening (issue 12, item 10): the health endpoints may listen on an address
of their own (`--health-addr`), so /metrics can be bound to 127.0.0.1 while
the kubelet's probes still reach /healthz on the node's address; and /metrics
may require a bearer token that an `authorize` callable checks (the
programs pass kube.metricsauth, TokenReview + SubjectAccessReview).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from externalip import log
from externalip.core.addresses import split_listen

_log = log.get(__name__)
Authorize = Callable[[str], Awaitable[bool]]
MAX_HEADERS = 64


async def serve(addr: str, ready: Callable[[], bool], *, health_addr: str = "",
                authorize: Authorize | None = None) -> list[asyncio.Server]:
    """Serve /metrics on addr and the health endpoints on health_addr (on addr
    too when health_addr is ""); "" for addr disables /metrics."""
    servers = []
    if addr:
        servers.append(await _start(addr, ready, metrics=True, health=not health_addr,
                                    authorize=authorize))
    if health_addr:
        servers.append(await _start(health_addr, ready, metrics=False, health=True,
                                    authorize=None))
    return servers


async def _start(addr: str, ready: Callable[[], bool], *, metrics: bool, health: bool,
                 authorize: Authorize | None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path, token = await asyncio.wait_for(_read_request(reader), timeout=5)
            status, ctype, body = await _answer(path, token, ready, metrics=metrics,
                                                health=health, authorize=authorize)
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError, ValueError):
            pass
        finally:
            writer.close()

    host, port = split_listen(addr)
    server = await asyncio.start_server(handle, host or None, port)
    _log.info("serving", addr=addr, metrics=metrics, health=health,
              metrics_auth=metrics and authorize is not None)
    return server


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The request's path and its bearer token ("" if none)."""
    parts = (await reader.readline()).decode("latin-1").split()
    path = parts[1].split("?")[0] if len(parts) >= 2 else ""
    token = ""
    for _ in range(MAX_HEADERS):
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        scheme, _, credential = value.strip().partition(" ")
        if name.strip().lower() == "authorization" and scheme.lower() == "bearer":
            token = credential.strip()
    return path, token


async def _answer(path: str, token: str, ready: Callable[[], bool], *, metrics: bool,
                  health: bool, authorize: Authorize | None) -> tuple[str, str, bytes]:
    text = "text/plain"
    if metrics and path == "/metrics":
        if authorize is not None:
            if not token:
                return "401 Unauthorized", text, b"a bearer token is required\n"
            if not await authorize(token):
                return "403 Forbidden", text, b"forbidden\n"
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
    if health and path == "/healthz":
        return "200 OK", text, b"ok\n"
    if health and path == "/readyz":
        ok = ready()
        return ("200 OK" if ok else "503 Service Unavailable"), text, \
            (b"ok\n" if ok else b"not ready\n")
    return "404 Not Found", text, b"not found\n"
