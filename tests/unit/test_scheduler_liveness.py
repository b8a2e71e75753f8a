from __future__ import annotations

from externalip.kube.leases import LeaseTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lease(name: str, renew: str, duration: int = 6) -> dict[str, object]:
    return {"metadata": {"name": name},
            "spec": {"renewTime": renew, "leaseDurationSeconds": duration}}


def test_freshness_is_measured_on_our_clock_from_observed_renewals() -> None:
    clock = Clock()
    t = LeaseTracker(clock)
    t.observe(lease("a", "2000-01-01T00:00:00Z"))  # a wall clock far in the past: irrelevant
    clock.now += 5.9
    assert t.alive("a")
    t.observe(lease("a", "2000-01-01T00:00:00Z"))  # same renewTime: not a renewal
    clock.now += 0.2
    assert not t.alive("a")
    t.observe(lease("a", "2000-01-01T00:00:02Z"))
    assert t.alive("a")
    assert t.next_expiry() == 6.0


def test_silence_while_our_own_watch_was_down_does_not_count() -> None:
    clock = Clock()
    t = LeaseTracker(clock)
    t.observe(lease("a", "r1"))
    clock.now += 20  # API outage: no renewals reached us
    assert t.alive("a", watching_since=None)  # cannot tell while disconnected
    reconnected = clock.now
    assert t.alive("a", watching_since=reconnected)  # a full lease to renew after reconnect
    clock.now += 6.1
    assert not t.alive("a", watching_since=reconnected)
    assert not t.alive("unknown")
