"""What every program sets up alike (HTTP endpoints, port guard) and running
its jobs until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from externalip import log
from externalip.health import serve
from externalip.kube.api import Api
from externalip.kube.metricsauth import MetricsAuthorizer
from externalip.net.nftfence import FenceError
from externalip.net.portguard import PortGuard

_log = log.get(__name__)


async def serve_endpoints(opts: argparse.Namespace, api: Api,
                          ready: Callable[[], bool]) -> list[asyncio.Server]:
    """/metrics, /healthz, /readyz as the flags say (--metrics-addr,
    --health-addr, --metrics-auth)."""
    authorize = MetricsAuthorizer(api) if opts.metrics_auth else None
    return await serve(opts.metrics_addr, ready, health_addr=opts.health_addr,
                       authorize=authorize)


def close_all(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()


def port_guard(opts: argparse.Namespace) -> PortGuard | None:
    """--port-guard: only the Services' ports reach the node on our addresses."""
    if not opts.port_guard:
        _log.warning("port guard off (--port-guard=false): every host service that listens "
                     "on all addresses answers on the Service addresses too")
        return None
    try:
        guard = PortGuard()
        guard.install()
    except (FenceError, OSError) as exc:
        _log.error("cannot install the port guard: host services answer on the Service "
                   "addresses", error=str(exc))
        return None
    return guard


async def until_signal(jobs: list[Coroutine[Any, Any, None]]) -> int:
    """Run the jobs until SIGTERM/SIGINT (0) or until one of them dies (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(job) for job in jobs]
    waiter = asyncio.ensure_future(stop.wait())
    running: set[asyncio.Future[Any]] = {waiter, *tasks}
    code = 0
    # A job that returns has simply finished its work (e.g. a one-shot kick);
    # one that raises takes the program down, so it restarts clean.
    while not waiter.done() and code == 0:
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                _log.error("task died", error=repr(task.exception()))
                code = 1
    for task in [waiter, *tasks]:
        task.cancel()
    for task in [waiter, *tasks]:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return code
