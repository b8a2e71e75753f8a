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

from lightkube.resources.core_v1 import Service

from externalip import __version__, log
from externalip.agent.services import SimpleOptions, wants_from_services
from externalip.kube.client import connect
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import Informer
from externalip.net.holder import AddressHolder, drive, refresh_period
from externalip.net.netlink import Netlink
from externalip.observability import serve
from externalip.programs.agent import MESSAGE_MAX, until_signal

_log = log.get(__name__)


class Simple:
    def __init__(self, opts: argparse.Namespace, services: Informer, holder: AddressHolder,
                 events: EventRecorder) -> None:
        self.options = SimpleOptions(
            link=opts.iface, mask=opts.mask, mask6=opts.mask6, lb_ingress=opts.lb_ingress,
            lb_class=opts.load_balancer_class, default_class=opts.default_class)
        self.services = services
        self.holder = holder
        self.events = events
        self.kick = asyncio.Event()
        services.add_handler(lambda _type, _obj: self.kick.set())
        self.kick.set()  # the first pass runs as soon as the Services are listed
        self.reconciled = False
        self._problems: dict[str, str] = {}

    async def reconcile(self) -> None:
        if not self.services.synced:
            # Leave our addresses as they are until the Services are listed,
            # then go on at once (addresses of Services deleted meanwhile go).
            await self.holder.adopt()
            await self.services.wait_synced()
        wants, invalid = wants_from_services(list(self.services.store.values()), self.options)
        result = await self.holder.reconcile(wants)
        problems = {**invalid, **result.problems}
        for key, why in problems.items():
            if self._problems.get(key) == why:
                continue
            _log.warning("service address refused", service=key, reason=why)
            obj = self.services.store.get(key, {})
            namespace, _, name = key.partition("/")
            ref = ObjectRef("v1", "Service", name, namespace,
                            obj.get("metadata", {}).get("uid", ""))
            await self.events.emit(ref, WARNING, "AddressRefused", why[:MESSAGE_MAX])
        self._problems = problems
        self.reconciled = True


async def run(opts: argparse.Namespace) -> int:
    log.setup(opts.log_format, opts.log_level)
    _log.info("simple mode starting", iface=opts.iface, mask=opts.mask, version=__version__,
              lb_ingress=opts.lb_ingress, addr_lifetime=opts.addr_lifetime)
    client = await connect(opts.kubeconfig)
    holder = AddressHolder(Netlink(), opts.addr_lifetime)
    simple = Simple(opts, Informer(client, Service), holder,
                    EventRecorder(client, "externalip-simple"))
    await holder.adopt()
    server = await serve(opts.metrics_addr,
                         lambda: simple.services.synced and simple.reconciled)
    jobs = [simple.services.run(), holder.watch(simple.kick),
            drive(simple.reconcile, simple.kick, refresh_period(opts.addr_lifetime,
                                                                 opts.resync))]
    if opts.garp_interval > 0:
        jobs.append(holder.repeat_announcements(opts.garp_interval))
    code = await until_signal(jobs)
    _log.info("simple mode stopping; addresses are left to expire or to be adopted",
              held=len(holder.held), lifetime=opts.addr_lifetime)
    if server is not None:
        server.close()
    await holder.close()
    await client.close()
    return code


def main(opts: argparse.Namespace) -> int:
    return asyncio.run(run(opts))
