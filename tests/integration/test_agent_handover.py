"""The drained side of a hand-over, one agent against the real API server
(core.handover): it keeps the address while the new holder is not ready,
writes no status meanwhile, and removes the address --handover-delay after
the new holder's status says ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.types import PatchType

from externalip.core.model import NODE_LABEL, ClaimSpec, claim_labels
from externalip.kube.resources import IpClaimResource
from externalip_lab.controlplane import ControlPlane
from tests.helpers import eventually
from tests.integration.agentrig import Rig

pytestmark = [pytest.mark.netns, pytest.mark.integration]


@pytest.fixture
async def rig(crds: ControlPlane, kube: AsyncClient, unique: str,
              tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(crds, kube, unique, tmp_path)
    try:
        yield r
    finally:
        await r.close()
        print(r.log()[-6000:])  # shown by pytest only when the test failed


async def hand_over(kube: AsyncClient, name: str, old: str, new: str) -> None:
    """What the scheduler writes when `old` is drained."""
    claim = await kube.get(IpClaimResource, name)
    spec = ClaimSpec.from_dict({**claim["spec"], "nodeName": new, "handoverFrom": old})
    gone = {k: None for k in (claim.metadata.labels or {}) if k != NODE_LABEL}
    await kube.patch(IpClaimResource, name, {
        "metadata": {"labels": {**gone, **claim_labels(spec)}},
        "spec": {"nodeName": new, "handoverFrom": old}}, patch_type=PatchType.MERGE)


async def test_the_drained_agent_keeps_the_address_until_the_new_holder_is_ready_and_a_delay(
        rig: Rig, kube: AsyncClient) -> None:
    rig.start("--handover-delay=2s")
    name = await rig.claim("a", "192.0.2.80/32")
    await eventually(lambda: "192.0.2.80" in rig.addresses(), 30, "held")
    new = f"{rig.prefix}-new"
    await hand_over(kube, name, rig.node_name, new)
    await asyncio.sleep(3)  # more than the delay: the new holder is not ready yet
    assert "192.0.2.80" in rig.addresses()
    assert (await rig.status(name))["holder"] == rig.node_name  # it wrote nothing since
    await kube.patch(IpClaimResource.Status, name, {"status": {"ready": True, "holder": new}},
                     patch_type=PatchType.MERGE)
    ready = time.monotonic()
    await eventually(lambda: "192.0.2.80" not in rig.addresses(), 15, "let go after the delay")
    waited = time.monotonic() - ready
    assert waited >= 1.9, waited  # not before the hand-over delay
    assert (await rig.status(name))["holder"] == new  # the new holder's status stands
    assert "going quiet" not in rig.log()  # nobody announced on this wire: the status did it
