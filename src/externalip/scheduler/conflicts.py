"""Addresses another host on the segment uses, as the agents' probes found.

An agent that finds an address in use before placing it (agent.conflicts)
writes the foreign MAC into the claim's `status.conflict`. The pool must skip
that address, also after the claim that carried the news is gone (the
Service gets another address, its old claim is deleted): this memory keeps
each such address out of allocation for MEMORY seconds after it was last
reported, then lets a probe try it again (the other host may have left).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from externalip.core.addresses import IPAddress, claim_ip

MEMORY = 600.0


@dataclass
class Conflicts:
    clock: Callable[[], float] = time.monotonic
    _seen: dict[IPAddress, tuple[str, float]] = field(default_factory=dict)  # -> (why, until)

    def observe(self, claims: Mapping[str, Mapping[str, Any]]) -> dict[IPAddress, str]:
        """Record the conflicts the claims report; address -> what is known of the other host."""
        now = self.clock()
        for obj in claims.values():
            status, spec = obj.get("status") or {}, obj.get("spec") or {}
            mac = status.get("conflict")
            if not mac:
                continue
            try:
                ip = claim_ip(str(spec.get("cidr") or ""))
            except ValueError:
                continue
            self._seen[ip] = (f"MAC {mac}, seen from node {spec.get('nodeName') or '?'}",
                              now + MEMORY)
        self._seen = {ip: v for ip, v in self._seen.items() if v[1] > now}
        return {ip: why for ip, (why, _) in self._seen.items()}
