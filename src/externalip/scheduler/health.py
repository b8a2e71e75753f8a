"""The conditions the scheduler writes besides the Service's, on their own writes.

- IpNode `Healthy`: the scheduler's judgement of each agent (its Lease, or
  its peers hearing its heartbeats: liveness.backstop_alive), written only
  when it changes: never per Lease renewal or heartbeat, so an idle cluster
  writes nothing. A dead agent could not write it about itself.
- IpClaim `Scheduled=False`: a claim the plan leaves without a node (the
  agents write `Scheduled` and `Ready` otherwise): a failure path only.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from externalip import log
from externalip.core.conditions import HEALTHY, Condition, find, merge, unscheduled
from externalip.core.desired import Plan, World
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
                alive: Collection[str], world: World, plan: Plan) -> None:
    """After a pass: each IpNode whose judgement changed, each claim left unplaced."""
    await _unscheduled(writer, world, plan)
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


async def _unscheduled(writer: Writer, world: World, plan: Plan) -> None:
    planned = {c.name: c.spec.node_name for c in (*plan.create, *plan.update)}
    for name, claim in world.claims.items():
        said = unscheduled(claim, planned.get(name, claim.spec.node_name))
        if said is not None and name not in plan.delete:
            await writer.patch_claim_condition(name, said)
