"""`externalip agent`: the claims-mode node agent (DaemonSet, hostNetwork).

Composition only: the controller (externalip.agent.controller) with its
adapters: the API gateway, the address holder (netlink and announcements) and
the conflict watcher. docs/agent.md has the lifecycle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from externalip import __version__, log
from externalip.agent.controller import Agent
from externalip.agent.failover import Failover, HeartbeatPeers, load_keys
from externalip.core.liveness import Timing
from externalip.kube.api import Api
from externalip.loops import drive
from externalip.net.conflict import ConflictWatcher, OwnMacs
from externalip.net.heartbeat import Heartbeats
from externalip.net.holder import AddressHolder, refresh_period
from externalip.net.netlink import Netlink
from externalip.net.nftfence import Fence, FenceError
from externalip.programs.run import close_all, port_guard, serve_endpoints, until_signal

_log = log.get(__name__)
FLUSH_WITHIN = 2.0  # seconds the last IpNode write may hold up a stopping agent


async def run(opts: argparse.Namespace) -> int:
    log.setup(opts.log_format, opts.log_level)
    _log.info("agent starting", node=opts.hostname, iface=opts.iface, version=__version__,
              addr_lifetime=opts.addr_lifetime, lease_duration=opts.lease_duration)
    api = Api.connect(opts.kubeconfig)
    holder = AddressHolder(Netlink(), opts.addr_lifetime, announce_rate=opts.announce_rate)
    failover, heartbeats = _failover(opts)
    agent = Agent(opts, api, holder, failover, port_guard(opts))
    if failover is not None:
        holder.on_announced = failover.announced  # the takeover clock stops on the wire
    await holder.adopt()
    macs = OwnMacs()
    watcher = ConflictWatcher(agent.heard, macs)
    try:
        watcher.start()
    except OSError as exc:  # e.g. no CAP_NET_RAW: run without the fence, say so
        _log.warning("cannot listen for address conflicts; a node cut off from the API "
                     "keeps its addresses until it reconnects", error=str(exc))
    # Ready once it serves: claims read and reconciled, and (with data-plane
    # failover) its fence armed, i.e. its peers hear it and it may answer. A
    # rolled DaemonSet then restarts the next agent only once this one is back
    # in the quorum, and a node cut off from its peers shows as not ready.
    servers = await serve_endpoints(opts, api, lambda: agent.claims.synced and agent.reconciled
                                    and (failover is None or failover.armed))
    period = refresh_period(opts.addr_lifetime, opts.resync)
    async def reconcile() -> None:
        await agent.reconcile()
        watcher.watch({want.interface.ip for want in holder.held})  # the kernel filter

    jobs = [agent.claims.run(), agent.first_sync(),
            agent.lease.run(opts.hb, agent.after_beat), holder.watch(agent.kick, macs.forget),
            drive(reconcile, agent.kick, period, loop="agent-reconcile"),
            drive(agent.report, agent.report_kick, opts.resync, loop="agent-report")]
    if opts.garp_interval > 0:
        # Not while our Lease has lapsed: the scheduler may have moved our IPs,
        # and re-announcing them would pull traffic back from the new holder.
        jobs.append(holder.repeat_announcements(opts.garp_interval, agent.lease_valid))
    if failover is not None:
        jobs.append(failover.watch(agent.kick))
    code = await until_signal(jobs)
    if heartbeats is not None:
        heartbeats.stop()
        if code == 0:  # SIGTERM: a restart (a rolled DaemonSet) moves nothing
            heartbeats.farewell(restart_grace(opts))
    with contextlib.suppress(TimeoutError):  # the API may be what is gone
        await asyncio.wait_for(agent.inventory.flush(), FLUSH_WITHIN)
    # Leave the addresses and the Lease as they are (see the module docstring).
    _log.info("agent stopping; addresses are left to expire or to be adopted",
              held=len(holder.held), lifetime=opts.addr_lifetime)
    watcher.close()
    close_all(servers)
    await holder.close()
    await api.close()
    return code


def restart_grace(opts: argparse.Namespace) -> float:
    """--restart-grace, but shorter than the Lease: the scheduler's backstop may
    re-place the claims once the Lease lapses, and the old fence must be shut
    by then."""
    return float(max(0.0, min(opts.restart_grace, opts.lease_duration - opts.hb)))


def _failover(opts: argparse.Namespace) -> tuple[Failover | None, Heartbeats | None]:
    """Data-plane failure detection, when heartbeat keys are configured."""
    keys = load_keys(opts.peer_key_dir) if opts.peer_key_dir else None
    if keys is None:
        _log.warning("no heartbeat key (--peer-key-dir): data-plane failure detection is "
                     "off; addresses move only when the scheduler's Lease backstop expires",
                     key_dir=opts.peer_key_dir, lease_duration=opts.lease_duration)
        return None, None
    timing = Timing(interval=opts.peer_interval, detect=opts.peer_detect,
                    confirm=opts.peer_confirm, startup=opts.peer_detect,
                    restart_grace=restart_grace(opts))
    failover = Failover(opts.hostname, opts.iface, timing)
    fence: Fence | None
    try:
        fence = Fence(opts.iface)
        fence.install()
    except (FenceError, OSError) as exc:
        _log.error("cannot install the nftables fence: a frozen agent could keep answering "
                   "for its addresses", link=opts.iface, error=str(exc))
        fence = None
    heartbeats = Heartbeats(
        opts.hostname, opts.iface, opts.peer_port, keys,
        interval=timing.interval, detect=timing.detect,
        may_hold=lambda _view: failover.may_hold(), on_auth_failure=failover.auth_failed,
        fence=fence, fence_timeout=max(timing.interval * 2.5, timing.detect - timing.confirm),
        restart_grace=timing.restart_grace, priority=opts.peer_priority)
    failover.attach(HeartbeatPeers(heartbeats), fence)
    heartbeats.start()
    return failover, heartbeats


def main(opts: argparse.Namespace) -> int:
    return asyncio.run(run(opts))
