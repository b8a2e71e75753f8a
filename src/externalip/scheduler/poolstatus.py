"""The pools' status (sizes, counts, `Valid`, `Exhausted`), written at a pace.

The counts change with every allocation: written by every pass that changed
them, a burst of new Services cost a pool status write per few Services. They
go through a core.pacing.Pacer per pool instead (--status-interval):
- at once: a pool's first status, a new size (its spec changed) and any
  condition that turns. `Exhausted=True` is what a user waits on (`kubectl
  wait --for=condition=Exhausted`, the chart's PoolExhausted alert reads
  the metric) and what explains the Services left waiting: it must not lag.
- paced: `used` and `free` alone. The first change after a quiet interval
  goes out at once, later ones at most once per interval, the latest counts
  winning; the pool metrics (externalip_pool_addresses_used) follow every
  pass regardless.
A change held back wakes the scheduler when it is due; that pass writes
whatever is latest. A new leader writes what differs on its first pass, so
nothing held back is lost with the old one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from externalip import log
from externalip.core.addresses import claim_ip
from externalip.core.desired import World
from externalip.core.pacing import Pacer
from externalip.core.pools import AddressPool, usage
from externalip.kube.api import Cache
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.times import now_rfc3339
from externalip.scheduler import metrics
from externalip.scheduler.writer import Writer

_log = log.get(__name__)


class PoolStatus:
    def __init__(self, writer: Writer, recorder: EventRecorder, store: Cache, *,
                 interval: float, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._writer, self._recorder, self._store = writer, recorder, store
        self._interval, self._wake, self._clock = interval, wake, clock
        self._pacers: dict[str, Pacer] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._shown: set[str] = set()  # label values with series, to prune

    async def write(self, pools: list[AddressPool], broken: dict[str, str],
                    world: World) -> None:
        """After a pass: every pool whose status changed and is due."""
        wanted = self._wanted(pools, broken, world)
        self._pacers = {n: p for n, p in self._pacers.items() if n in wanted}
        wait: float | None = None
        for name, status in wanted.items():
            obj = self._store.get(name)
            old = (obj or {}).get("status") or {}
            if obj is None or _same(old, status):
                continue
            pacer = self._pacers.setdefault(name, Pacer(self._interval))
            due = pacer.delay(self._clock(), urgent=_urgent(old, status))
            if due > 0:
                wait = due if wait is None else min(wait, due)
                continue
            pacer.wrote(self._clock())
            _keep_transitions(old, status)
            if name in broken:
                await self._recorder.emit(ObjectRef("ipcontroller.ext/v1", "IpClaimPool", name,
                                                    uid=obj["metadata"].get("uid", "")),
                                          WARNING, "InvalidSpec", broken[name])
                _log.warning("pool unusable", pool=name, error=broken[name])
            await self._writer.patch_pool_status(name, status)
        if wait is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait + 0.01, self._due)

    def _due(self) -> None:
        self._timer = None
        self._wake()

    def _wanted(self, pools: list[AddressPool], broken: dict[str, str],
                world: World) -> dict[str, dict[str, Any]]:
        addresses = [claim_ip(c.spec.cidr) for c in world.claims.values()]
        wanted: dict[str, dict[str, Any]] = {}
        for pool in pools:
            use = usage(pool, addresses)
            wanted[pool.name] = {"total": use.total, "used": use.used, "free": use.free,
                                 "conditions": [_condition("Valid", True, "PoolValid",
                                                           "addresses can be allocated"),
                                                _exhausted(use.free)]}
            metrics.POOL_SIZE.labels(pool.name).set(use.total)
            metrics.POOL_USED.labels(pool.name).set(use.used)
        for gauge in (metrics.POOL_SIZE, metrics.POOL_USED):
            metrics.prune(gauge, self._shown, [p.name for p in pools])
        self._shown = {p.name for p in pools}
        for name, message in broken.items():
            wanted[name] = {"total": 0, "used": 0, "free": 0,
                            "conditions": [_condition("Valid", False, "InvalidSpec", message)]}
        return wanted


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "lastTransitionTime": now_rfc3339()}


def _exhausted(free: int) -> dict[str, Any]:
    # a constant message: the count is in status.free, and a message that
    # changed per allocation would make every allocation rewrite the condition
    if free:
        return _condition("Exhausted", False, "FreeAddresses", "addresses are free")
    return _condition("Exhausted", True, "NoFreeAddress",
                      "every address is taken: new Services of this pool wait")


def _conditions(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
            for c in status.get("conditions") or ()]


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool((old.get("total"), old.get("used"), old.get("free"), _conditions(old))
                == (new.get("total"), new.get("used"), new.get("free"), _conditions(new)))


def _urgent(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Anything but the counts of a pool whose size stays: see the module docstring."""
    return bool(old.get("total") != new.get("total") or _conditions(old) != _conditions(new))


def _keep_transitions(old: dict[str, Any], new: dict[str, Any]) -> None:
    """A condition whose status stays keeps its lastTransitionTime."""
    previous = {c["type"]: c for c in old.get("conditions") or ()}
    for cond in new["conditions"]:
        before = previous.get(cond["type"])
        if before and before.get("status") == cond["status"]:
            cond["lastTransitionTime"] = before.get("lastTransitionTime")
