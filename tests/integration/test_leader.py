"""LeaderElector against a real API server. Clocks are fake, so expiry and the
renew deadline are stepped explicitly, never waited for."""

from __future__ import annotations

import asyncio

import pytest
from lightkube import AsyncClient

from externalip.kube.client import raw_http
from externalip.kube.leases import LeaderElector
from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(kube: AsyncClient, ns: str, who: str, clock: Clock,
            changes: list[bool] | None = None) -> LeaderElector:
    return LeaderElector(kube, ns, "lead", who, lease_duration=6, renew_deadline=4,
                         retry_period=1, clock=clock,
                         on_change=changes.append if changes is not None else None)


async def lease_spec(kube: AsyncClient, ns: str) -> dict[str, object]:
    resp = await raw_http(kube).get(
        f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/lead")
    resp.raise_for_status()
    return dict(resp.json()["spec"])


async def test_one_wins_the_other_waits_until_it_sees_no_renewal_for_a_lease(
        control_plane: ControlPlane, kube: AsyncClient, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    ca, cb = Clock(), Clock()
    a, b = elector(kube, unique, "a", ca), elector(kube, unique, "b", cb)
    assert await a.try_acquire_or_renew() and a.is_leader
    assert not await b.try_acquire_or_renew() and not b.is_leader
    # b's clock runs far ahead, but a keeps renewing: each renewal changes the
    # resourceVersion b observes, so b never judges the lease expired.
    for _ in range(3):
        cb.t += 5
        ca.t += 1
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
    # a stops renewing: b takes over only once its own clock saw 6 s of silence
    cb.t += 5
    assert not await b.try_acquire_or_renew()
    cb.t += 2
    assert await b.try_acquire_or_renew() and b.is_leader
    spec = await lease_spec(kube, unique)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # a, back, finds b's renewals and stays a follower
    assert not await a.try_acquire_or_renew() and not a.is_leader


async def test_a_leader_that_cannot_renew_in_time_stops_at_once(
        control_plane: ControlPlane, kube: AsyncClient, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    clock, changes = Clock(), list[bool]()
    a = elector(kube, unique, "a", clock, changes)
    assert await a.try_acquire_or_renew()
    clock.t += 3.9
    assert a.is_leader
    clock.t += 0.2  # past the renew deadline (4 s), well before the lease (6 s) expires
    assert not a.is_leader  # no request needed: the check is local
    assert changes == [True, False]


async def test_racing_candidates_on_an_expired_lease_exactly_one_wins(
        control_plane: ControlPlane, kube: AsyncClient, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    old = elector(kube, unique, "old", Clock())
    assert await old.try_acquire_or_renew()
    clocks = [Clock() for _ in range(5)]
    candidates = [elector(kube, unique, f"c{i}", c) for i, c in enumerate(clocks)]
    for cand, clock in zip(candidates, clocks, strict=True):
        assert not await cand.try_acquire_or_renew()  # each observes the lease once
        clock.t += 7  # ... and then sees it silent for longer than its duration
    won = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    assert sum(won) == 1  # optimistic concurrency: one PUT wins, the rest get 409
    winner = candidates[won.index(True)]
    assert (await lease_spec(kube, unique))["holderIdentity"] == winner.identity


async def test_release_hands_over_without_waiting_for_expiry(
        control_plane: ControlPlane, kube: AsyncClient, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    ca, cb = Clock(), Clock()
    a, b = elector(kube, unique, "a", ca), elector(kube, unique, "b", cb)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader
    assert await b.try_acquire_or_renew()  # no holder: free at once, no clock step
    assert (await lease_spec(kube, unique))["holderIdentity"] == "b"
