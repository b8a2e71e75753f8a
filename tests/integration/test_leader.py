"""LeaderElector against a real API server. Clocks are fake, so expiry and the
renew deadline are stepped explicitly, never waited for."""

from __future__ import annotations

import asyncio

import pytest

from externalip.kube.api import LEASES, Api
from externalip.kube.leases import LeaderElector
from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(api: Api, ns: str, who: str, clock: Clock,
            changes: list[bool] | None = None) -> LeaderElector:
    return LeaderElector(api, ns, "lead", who, lease_duration=6, renew_deadline=4,
                         retry_period=1, clock=clock,
                         on_change=changes.append if changes is not None else None)


async def lease_spec(api: Api, ns: str) -> dict[str, object]:
    return dict((await api.get(LEASES, "lead", ns))["spec"])


async def test_one_wins_the_other_waits_until_it_sees_no_renewal_for_a_lease(
        control_plane: ControlPlane, api: Api, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    ca, cb = Clock(), Clock()
    a, b = elector(api, unique, "a", ca), elector(api, unique, "b", cb)
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
    spec = await lease_spec(api, unique)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # a, back, finds b's renewals and stays a follower
    assert not await a.try_acquire_or_renew() and not a.is_leader


async def test_a_leader_that_cannot_renew_in_time_stops_at_once(
        control_plane: ControlPlane, api: Api, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    clock, changes = Clock(), list[bool]()
    a = elector(api, unique, "a", clock, changes)
    assert await a.try_acquire_or_renew()
    clock.t += 3.9
    assert a.is_leader
    clock.t += 0.2  # past the renew deadline (4 s), well before the lease (6 s) expires
    assert not a.is_leader  # no request needed: the check is local
    assert changes == [True, False]


async def test_racing_candidates_on_an_expired_lease_exactly_one_wins(
        control_plane: ControlPlane, api: Api, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    old = elector(api, unique, "old", Clock())
    assert await old.try_acquire_or_renew()
    clocks = [Clock() for _ in range(5)]
    candidates = [elector(api, unique, f"c{i}", c) for i, c in enumerate(clocks)]
    for cand, clock in zip(candidates, clocks, strict=True):
        assert not await cand.try_acquire_or_renew()  # each observes the lease once
        clock.t += 7  # ... and then sees it silent for longer than its duration
    won = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    assert sum(won) == 1  # optimistic concurrency: one PUT wins, the rest get 409
    winner = candidates[won.index(True)]
    assert (await lease_spec(api, unique))["holderIdentity"] == winner.identity


async def test_release_hands_over_without_waiting_for_expiry(
        control_plane: ControlPlane, api: Api, unique: str) -> None:
    control_plane.ensure_namespace(unique)
    ca, cb = Clock(), Clock()
    a, b = elector(api, unique, "a", ca), elector(api, unique, "b", cb)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader
    assert await b.try_acquire_or_renew()  # no holder: free at once, no clock step
    assert (await lease_spec(api, unique))["holderIdentity"] == "b"
