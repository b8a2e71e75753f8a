"""`externalip scheduler`: informers, leader election and the reconcile loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket

from externalip import log
from externalip.kube.api import Api
from externalip.kube.leases import LeaderElector
from externalip.programs.run import close_all, serve_endpoints
from externalip.scheduler import metrics
from externalip.scheduler.controller import Options, Scheduler

_log = log.get(__name__)


async def run(opts: argparse.Namespace) -> int:
    api = Api.connect(opts.kubeconfig)
    identity = f"{socket.gethostname()}-{os.getpid()}"
    elector: LeaderElector | None = None
    scheduler: Scheduler | None = None

    def leadership(leader: bool) -> None:
        metrics.LEADER.set(1 if leader else 0)
        if leader and scheduler is not None:
            scheduler.wake()  # act on the warm caches at once

    if opts.leader_elect:
        elector = LeaderElector(
            api, opts.namespace, opts.leader_elect_resource_name, identity,
            lease_duration=opts.leader_elect_lease_duration,
            renew_deadline=opts.leader_elect_renew_deadline,
            retry_period=opts.leader_elect_retry_period, on_change=leadership)
    scheduler = Scheduler(
        api,
        Options(namespace=opts.namespace, mask4=opts.mask, mask6=opts.mask6,
                policy=opts.nodefilter, monitor=opts.monitor,
                lb_class=opts.load_balancer_class, default_class=opts.default_class,
                status_interval=opts.status_interval),
        is_leader=(lambda: elector.is_leader) if elector else (lambda: True))
    if elector is None:
        metrics.LEADER.set(1)
    servers = await serve_endpoints(opts, api, lambda: scheduler.synced)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log.info("scheduler starting", identity=identity, leader_elect=opts.leader_elect,
              nodefilter=opts.nodefilter, namespace=opts.namespace)
    tasks = [asyncio.create_task(scheduler.run())]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run()))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is not stopper and task.exception() is not None:
            _log.error("scheduler failed", error=repr(task.exception()))
            code = 1
    for task in [*tasks, stopper]:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if elector is not None:
        await elector.release()
    close_all(servers)
    await api.close()
    _log.info("scheduler stopped")
    return code


def main(opts: argparse.Namespace) -> int:
    log.setup(opts.log_format, opts.log_level)
    return asyncio.run(run(opts))
