"""Per-object retry delays for the scheduler's writes.

A write the API server refuses (422 from a webhook, 403 from a policy, a
conflict it keeps losing) is retried with a delay that doubles per failure
of that object alone, up to a limit. Other objects' events and passes do not
reset it: a pass may still plan the write, but it is held back until due.
Only the object's own successful write (or the write no longer being
planned) forgets its delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from externalip.core.desired import Plan
from externalip.core.model import Claim

FIRST, LIMIT = 0.5, 60.0


def _ingress(obj: Mapping[str, Any] | None) -> tuple[str, ...]:
    lb = ((obj or {}).get("status") or {}).get("loadBalancer") or {}
    return tuple(i.get("ip", "") for i in lb.get("ingress") or ())


def _external(obj: Mapping[str, Any] | None) -> tuple[str, ...]:
    return tuple(((obj or {}).get("spec") or {}).get("externalIPs") or ())


def _claim_is(obj: Mapping[str, Any] | None, want: Claim) -> bool:
    return obj is not None and Claim.from_object(obj).spec == want.spec


@dataclass
class _Delay:
    seconds: float
    until: float


@dataclass
class Backoff:
    clock: Callable[[], float] = time.monotonic
    _delays: dict[str, _Delay] = field(default_factory=dict)

    def hold_back(self, plan: Plan) -> Plan:
        """The plan without the writes of objects still waiting for their retry."""
        now = self.clock()

        def due(key: str) -> bool:
            delay = self._delays.get(key)
            return delay is None or delay.until <= now
        return replace(
            plan,
            create=[c for c in plan.create if due(f"claim/{c.name}")],
            update=[c for c in plan.update if due(f"claim/{c.name}")],
            delete=[n for n in plan.delete if due(f"claim/{n}")],
            ingress={k: v for k, v in plan.ingress.items() if due(f"service/{k}")},
            external_ips={k: v for k, v in plan.external_ips.items() if due(f"service/{k}")},
        )

    def record(self, tried: Plan, planned: Plan, claims: Mapping[str, Mapping[str, Any]],
               services: Mapping[str, Mapping[str, Any]]) -> None:
        """Judge each tried write by what the caches now hold, and forget the
        delays of objects the plan no longer writes."""
        outcomes: dict[str, bool] = {}
        for claim in (*tried.create, *tried.update):
            outcomes[f"claim/{claim.name}"] = _claim_is(claims.get(claim.name), claim)
        for name in tried.delete:
            outcomes[f"claim/{name}"] = name not in claims
        for key, ips in tried.ingress.items():
            outcomes[f"service/{key}"] = _ingress(services.get(key)) == ips
        for key, ips in tried.external_ips.items():
            ok = _external(services.get(key)) == ips
            outcomes[f"service/{key}"] = outcomes.get(f"service/{key}", True) and ok
        now = self.clock()
        for key, ok in outcomes.items():
            if ok:
                self._delays.pop(key, None)
                continue
            old = self._delays.get(key)
            seconds = min(LIMIT, old.seconds * 2) if old else FIRST
            self._delays[key] = _Delay(seconds, now + seconds)
        wanted = {f"claim/{c.name}" for c in (*planned.create, *planned.update)}
        wanted |= {f"claim/{n}" for n in planned.delete}
        wanted |= {f"service/{k}" for k in (*planned.ingress, *planned.external_ips)}
        for key in set(self._delays) - wanted:
            del self._delays[key]

    def next_due(self) -> float | None:
        """Seconds until the earliest held-back write may be tried again."""
        if not self._delays:
            return None
        return max(0.0, min(d.until for d in self._delays.values()) - self.clock())

    def waiting(self) -> int:
        return len(self._delays)
