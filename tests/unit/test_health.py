"""The HTTP endpoints (issue 12, item 10): IPv6 listen addresses, health on an
address of its own, and a bearer token in front of /metrics."""

from __future__ import annotations

import asyncio
import socket

import pytest

from externalip.core.addresses import split_listen
from externalip.health import serve


def test_listen_addresses_of_both_families_parse() -> None:
    assert split_listen(":9440") == ("", 9440)
    assert split_listen("127.0.0.1:0") == ("127.0.0.1", 0)  # any free port
    assert split_listen("127.0.0.1:9440") == ("127.0.0.1", 9440)
    assert split_listen("[::1]:9440") == ("::1", 9440)
    assert split_listen("[::]:9440") == ("::", 9440)
    assert split_listen("2001:db8::1:9440") == ("2001:db8::1", 9440)  # $(POD_IP):9440
    assert split_listen("localhost:9440") == ("localhost", 9440)
    for bad in ("9440", "[::1]", "[::1]:", ":65536", "[nope]:1", "a:b:1", "host:port",
                "[127.0.0.1]:1"):
        with pytest.raises(ValueError, match=r"listen address|not an address|brackets"):
            split_listen(bad)


def free_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(host: str, port: int, path: str, token: str = "") -> str:
    reader, writer = await asyncio.open_connection(host, port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n".encode())
    answer = (await reader.read()).decode()
    writer.close()
    return answer.split("\r\n", 1)[0].split(" ", 1)[1]


async def test_health_on_its_own_address_and_metrics_on_loopback_v6() -> None:
    metrics, health = free_port(socket.AF_INET6), free_port()
    servers = await serve(f"[::1]:{metrics}", lambda: False,
                          health_addr=f"127.0.0.1:{health}")
    try:
        assert await get("::1", metrics, "/metrics") == "200 OK"
        assert await get("::1", metrics, "/healthz") == "404 Not Found"  # moved away
        assert await get("127.0.0.1", health, "/healthz") == "200 OK"
        assert await get("127.0.0.1", health, "/readyz") == "503 Service Unavailable"
        assert await get("127.0.0.1", health, "/metrics") == "404 Not Found"
    finally:
        for server in servers:
            server.close()


async def test_metrics_need_a_token_the_authorizer_accepts() -> None:
    asked: list[str] = []

    async def authorize(token: str) -> bool:
        asked.append(token)
        return token == "good"

    port = free_port()
    servers = await serve(f"127.0.0.1:{port}", lambda: True, authorize=authorize)
    try:
        assert await get("127.0.0.1", port, "/metrics") == "401 Unauthorized"
        assert await get("127.0.0.1", port, "/metrics", "bad") == "403 Forbidden"
        assert await get("127.0.0.1", port, "/metrics", "good") == "200 OK"
        assert await get("127.0.0.1", port, "/healthz") == "200 OK"  # probes need none
        assert asked == ["bad", "good"]
    finally:
        for server in servers:
            server.close()
