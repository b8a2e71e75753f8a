"""Claims their node refused, so that placement tries another node.

An agent that cannot hold a claim (its interface is missing, the address is
the node's own, ...) writes status.ready=false with a message. Placement then
treats that node as ineligible for that address for a while, so the claim
moves to another eligible node; the while doubles with each refusal of the
same address (5 s up to 5 min), so addresses that every node refuses move
rarely, not in a loop. A status is attributed to the node only when it was
written after the claim was last assigned there (a higher resourceVersion),
so the old node's refusal is never blamed on the new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FIRST, LIMIT = 5.0, 300.0


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class Refusals:
    clock: Callable[[], float] = time.monotonic
    # claim name -> (node, resourceVersion when first seen assigned there)
    _assigned: dict[str, tuple[str, int]] = field(default_factory=dict)
    # cidr -> node -> until (monotonic)
    _refused: dict[str, dict[str, float]] = field(default_factory=dict)
    _delay: dict[str, float] = field(default_factory=dict)  # cidr -> last delay

    def observe(self, claims: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
        """Record new refusals from the claims' statuses; cidr -> nodes to avoid now."""
        now = self.clock()
        for name, obj in claims.items():
            spec, status = obj.get("spec") or {}, obj.get("status") or {}
            node, cidr = str(spec.get("nodeName") or ""), str(spec.get("cidr") or "")
            version = _version(obj)
            seen = self._assigned.get(name)
            if seen is None or seen[0] != node:
                # first sight counts a standing refusal (a restarted scheduler);
                # a move does not (the status is still the previous node's)
                self._assigned[name] = (node, -1 if seen is None else version)
                seen = self._assigned[name]
            if status.get("ready"):
                self._delay.pop(cidr, None)
            elif node and status.get("message") and version > seen[1] \
                    and node not in self._refused.get(cidr, {}):
                delay = min(LIMIT, self._delay.get(cidr, FIRST / 2) * 2)
                self._delay[cidr] = delay
                self._refused.setdefault(cidr, {})[node] = now + delay
        for name in set(self._assigned) - set(claims):
            del self._assigned[name]
        out: dict[str, frozenset[str]] = {}
        for cidr, nodes in list(self._refused.items()):
            live = {n: until for n, until in nodes.items() if until > now}
            if live:
                self._refused[cidr] = live
                out[cidr] = frozenset(live)
            else:
                del self._refused[cidr]
        return out
