"""`externalip agent`: the claims-mode node agent (DaemonSet, hostNetwork).

Composition only: the controller (externalip.agent.controller) with its
adapters: the API client, the address holder (netlink and announcements) and
the conflict watcher. docs/agent.md has the lifecycle.
"""

from __future__ import annotations

import argparse
import asyncio

from externalip import __version__, log
from externalip.agent.controller import Agent
from externalip.health import serve
from externalip.kube.client import connect
from externalip.net.conflict import ConflictWatcher, OwnMacs
from externalip.net.holder import AddressHolder, drive, refresh_period
from externalip.net.netlink import Netlink
from externalip.programs.run import until_signal

_log = log.get(__name__)


async def run(opts: argparse.Namespace) -> int:
    log.setup(opts.log_format, opts.log_level)
    _log.info("agent starting", node=opts.hostname, iface=opts.iface, version=__version__,
              addr_lifetime=opts.addr_lifetime, lease_duration=opts.lease_duration)
    client = await connect(opts.kubeconfig)
    holder = AddressHolder(Netlink(), opts.addr_lifetime)
    agent = Agent(opts, client, holder)
    await holder.adopt()
    macs = OwnMacs()
    watcher = ConflictWatcher(agent.heard, macs)
    try:
        watcher.start()
    except OSError as exc:  # e.g. no CAP_NET_RAW: run without the fence, say so
        _log.warning("cannot listen for address conflicts; a node cut off from the API "
                     "keeps its addresses until it reconnects", error=str(exc))
    server = await serve(opts.metrics_addr, lambda: agent.claims.synced and agent.reconciled)
    period = refresh_period(opts.addr_lifetime, opts.resync)
    async def reconcile() -> None:
        await agent.reconcile()
        watcher.watch({want.interface.ip for want in holder.held})  # the kernel filter

    jobs = [agent.claims.run(), agent.first_sync(), agent.heartbeat(),
            holder.watch(agent.kick, macs.forget),
            drive(reconcile, agent.kick, period),
            drive(agent.report, agent.report_kick, opts.resync)]
    if opts.garp_interval > 0:
        # Not while our Lease has lapsed: the scheduler may have moved our IPs,
        # and re-announcing them would pull traffic back from the new holder.
        jobs.append(holder.repeat_announcements(opts.garp_interval, agent.lease_valid))
    code = await until_signal(jobs)
    # Leave the addresses and the Lease as they are (see the module docstring).
    _log.info("agent stopping; addresses are left to expire or to be adopted",
              held=len(holder.held), lifetime=opts.addr_lifetime)
    watcher.close()
    if server is not None:
        server.close()
    await holder.close()
    await client.close()
    return code


def main(opts: argparse.Namespace) -> int:
    return asyncio.run(run(opts))
