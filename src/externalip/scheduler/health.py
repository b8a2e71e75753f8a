"""The IpNode `Healthy` condition: the scheduler's judgement of each agent.

Written by the scheduler because the judgement is the scheduler's (the
agent's Lease, or its peers hearing its heartbeats: liveness.backstop_alive),
and only when it changes: never per Lease renewal or heartbeat, so an idle
cluster writes nothing. A dead agent could not write it about itself.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from externalip import log
from externalip.core.conditions import HEALTHY, Condition, find, merge
from externalip.kube.times import now_rfc3339
from externalip.scheduler.writer import Writer

_log = log.get(__name__)


def judged(alive: bool) -> Condition:
    if alive:
        return Condition.of(HEALTHY, True, "AgentAlive",
                            "the agent renews its Lease or its peers hear its heartbeats")
    return Condition.of(HEALTHY, False, "AgentDown",
                        "the agent's Lease expired and no live peer hears its heartbeats; "
                        "its addresses are taken over by its standbys")


async def write(writer: Writer, ipnodes: MutableMapping[str, dict[str, Any]],
                alive: Collection[str]) -> None:
    """Write the condition of each IpNode whose judgement changed."""
    for name, obj in list(ipnodes.items()):
        want = judged(name in alive)
        status = obj.get("status") or {}
        if find(status.get("conditions"), HEALTHY) == want:
            continue
        conditions = merge(status.get("conditions"), (want,), now_rfc3339())
        if await writer.patch_ipnode_status(name, {"conditions": conditions}):
            _log.info("node health", node=name, healthy=want.status)
            # what the watch will deliver: the next pass must not write it again
            ipnodes[name] = {**obj, "status": {**status, "conditions": conditions}}
