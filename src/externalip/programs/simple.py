"""`externalip simple`: simple mode, every Service external IP on one interface.

One instance (Deployment, hostNetwork) holds every `spec.externalIPs` address
(with --lb-ingress also the LoadBalancer ingress IPs of the Services this
installation serves) on --iface with --mask/--mask6; an address goes when the
last Service naming it does. The same holder as the agent: marked addresses
only, the node's own addresses refused (Event on the Service), announcements
on every add (none on lo: `--iface=lo` is the ECMP/BGP scheme), a lifetime
refreshed while alive, adoption of marked addresses after a restart.
"""

from __future__ import annotations

import argparse
import asyncio

from externalip import __version__, log
from externalip.agent.simple import Simple
from externalip.kube.api import SERVICES, Api
from externalip.kube.events import EventRecorder
from externalip.kube.informer import Informer
from externalip.loops import drive
from externalip.net.holder import AddressHolder, refresh_period
from externalip.net.netlink import Netlink
from externalip.programs.run import close_all, port_guard, serve_endpoints, until_signal

_log = log.get(__name__)


async def run(opts: argparse.Namespace) -> int:
    log.setup(opts.log_format, opts.log_level)
    _log.info("simple mode starting", iface=opts.iface, mask=opts.mask, version=__version__,
              lb_ingress=opts.lb_ingress, addr_lifetime=opts.addr_lifetime)
    api = Api.connect(opts.kubeconfig)
    holder = AddressHolder(Netlink(), opts.addr_lifetime, announce_rate=opts.announce_rate)
    simple = Simple(opts, Informer(api, SERVICES), holder,
                    EventRecorder(api, "externalip-simple"), port_guard(opts))
    await holder.adopt()
    servers = await serve_endpoints(opts, api,
                                    lambda: simple.services.synced and simple.reconciled)
    jobs = [simple.services.run(), holder.watch(simple.kick),
            drive(simple.reconcile, simple.kick,
                  refresh_period(opts.addr_lifetime, opts.resync), loop="simple")]
    if opts.garp_interval > 0:
        jobs.append(holder.repeat_announcements(opts.garp_interval))
    code = await until_signal(jobs)
    _log.info("simple mode stopping; addresses are left to expire or to be adopted",
              held=len(holder.held), lifetime=opts.addr_lifetime)
    close_all(servers)
    await holder.close()
    await api.close()
    return code


def main(opts: argparse.Namespace) -> int:
    return asyncio.run(run(opts))
