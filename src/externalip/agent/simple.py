"""Simple mode's controller: every Service external IP on one interface.

It turns the Services it sees into wants (core.simple, pure), holds them
through net.holder and reports refusals as Events on the Services.
"""

from __future__ import annotations

import argparse
import asyncio

from externalip import log
from externalip.core import views
from externalip.core.addresses import IPInterface
from externalip.core.holding import may_hold
from externalip.core.model import MESSAGE_MAX
from externalip.core.simple import SimpleOptions, wants_from_services
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import Informer
from externalip.net.holder import AddressHolder
from externalip.net.portguard import PortGuard, guard_held

_log = log.get(__name__)


class Simple:
    def __init__(self, opts: argparse.Namespace, services: Informer, holder: AddressHolder,
                 events: EventRecorder, guard: PortGuard | None = None) -> None:
        self.options = SimpleOptions(
            link=opts.iface, mask=opts.mask, mask6=opts.mask6, lb_ingress=opts.lb_ingress,
            lb_class=opts.load_balancer_class, default_class=opts.default_class)
        self.services = services
        self.holder = holder
        self.events = events
        self.guard = guard
        self.kick = asyncio.Event()
        services.add_handler(lambda _type, _obj: self.kick.set())
        self.kick.set()  # the first pass runs as soon as the Services are listed
        self.reconciled = False
        self._problems: dict[str, str] = {}
        self._own: tuple[IPInterface, ...] = ()  # the node's own addresses: never guarded

    async def reconcile(self) -> None:
        if not self.services.synced:
            # Leave our addresses as they are until the Services are listed,
            # then go on at once (addresses of Services deleted meanwhile go).
            await self.holder.adopt()
            await self.services.wait_synced()
        wants, invalid = wants_from_services(list(self.services.store.values()), self.options)
        ports = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}":
                 views.service_ports(o.get("spec") or {}) for o in self.services.store.values()}
        guard_held(self.guard, (*self.holder.held, *may_hold(wants, self._own)), ports)
        result = await self.holder.reconcile(wants)
        guard_held(self.guard, result.held, ports)
        self._own = result.plan.own
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
