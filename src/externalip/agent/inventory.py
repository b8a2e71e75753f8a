"""The agent's IpNode: what it reports about its node, written at a pace.

The inventory (core.claims.node_status) lists every address the agent holds,
so a burst of new Services changed it once per reconcile: about half a
request per Service. It is written through a core.pacing.Pacer instead
(--status-interval): the first change after a quiet interval at once, then
at most one write per interval carrying the latest state, and the last one
on SIGTERM. What may wait and what may not is core.claims.inventory_urgent,
which names every reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from externalip import API_GROUP, API_VERSION, log
from externalip.core.claims import inventory_urgent
from externalip.core.model import NodeStatus
from externalip.core.pacing import Pacer
from externalip.kube.api import IPNODES, Api, ApiError, ConflictError, NotFoundError
from externalip.net.holder import RECONCILE_ERRORS

_log = log.get(__name__)


class Inventory:
    """Writes the IpNode's status when it changed and is due; `kick` asks for
    another report when a held-back change becomes due."""

    def __init__(self, api: Api, node: str, interval: float, kick: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self.node = node
        self._pacer = Pacer(interval)
        self._kick = kick
        self._clock = clock
        self._written: NodeStatus | None = None  # as the API server has it, from us
        self._wanted: NodeStatus | None = None  # the latest report
        self._exists = False
        self._timer: asyncio.TimerHandle | None = None

    async def report(self, status: NodeStatus) -> None:
        """The inventory as it stands now: written now, or when it is due."""
        self._wanted = status
        if status == self._written:
            return
        wait = self._pacer.delay(self._clock(), urgent=inventory_urgent(self._written, status))
        if wait > 0:
            if self._timer is None:  # the next report then writes whatever is latest
                self._timer = asyncio.get_running_loop().call_later(wait, self._due)
            return
        await self._write(status)

    async def flush(self) -> None:
        """Write a held-back change now (on SIGTERM: one request, nothing owed)."""
        if self._wanted is not None and self._wanted != self._written:
            await self._write(self._wanted)

    def _due(self) -> None:
        self._timer = None
        self._kick()

    async def _write(self, status: NodeStatus) -> None:
        self._pacer.wrote(self._clock())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self._ensure()
            await self._api.merge_patch(IPNODES, self.node, {"status": status.to_dict()},
                                        subresource="status")
        except (ApiError, OSError) as exc:  # retried by the next report, at the same pace
            if isinstance(exc, NotFoundError):
                self._exists = False  # deleted by someone: create it again next time
            RECONCILE_ERRORS.labels("ipnode").inc()
            _log.warning("cannot write IpNode status", node=self.node, error=str(exc))
            return
        self._written = status

    async def _ensure(self) -> None:
        if self._exists:
            return
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "IpNode",
                "metadata": {"name": self.node}, "spec": {}}
        with contextlib.suppress(ConflictError):  # it exists: what we wanted
            await self._api.create(IPNODES, body)
        self._exists = True
