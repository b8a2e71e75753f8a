"""Failure detection on the data plane and takeover without the API, for one agent.

The heartbeat thread (net.heartbeat) hears the peers; this module turns
what it hears into `core.liveness.Evidence` and applies the pure rules:
- which claims this node holds now (`select`): its own, unless another live
  node took them over, and those it takes over from a node judged down;
- whether the kernel fence may stay open (`may_hold`, called from the
  heartbeat thread every interval): only on the majority side, and only
  once re-armed after a lapse (a node that went silent holds nothing again
  before it has read the claims from the API: the claims tell it what moved
  meanwhile);
- when to re-plan (`watch`): whenever the set of nodes judged down changes.

The takeover is a local decision: the address is added and announced at
once; the claim's status (holder, term) is written afterwards, and the
scheduler makes it the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Protocol

from prometheus_client import Histogram

from externalip import log
from externalip.core import liveness
from externalip.core.addresses import IPAddress, parse_ip
from externalip.core.claims import to_hold
from externalip.core.heartbeat import KeyRing
from externalip.core.holding import Want
from externalip.core.model import Claim
from externalip.net.heartbeat import Heartbeats

_log = log.get(__name__)

TAKEOVER_SECONDS = Histogram(
    "externalip_takeover_seconds",
    "From a peer judged down (or a takeover decided) to the first announcement of an "
    "address this node took over from it",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MEMBER_MEMORY = 60.0  # seconds a silent peer still counts as a member
ALARM_REPEAT = 60.0  # seconds between two alarms about the same peer


class FenceSink(Protocol):
    """The kernel fence's address set; net.nftfence.Fence provides it."""

    def hold(self, addresses: Iterable[IPAddress]) -> None: ...

    def quiet(self, addresses: Iterable[IPAddress]) -> None: ...


class PeerSource(Protocol):
    """What the heartbeat transport tells us (HeartbeatPeers adapts net.heartbeat)."""

    def peers(self, names: Collection[str]) -> dict[str, liveness.Peer]: ...

    def starved(self) -> bool: ...

    def unverified(self, within: float) -> frozenset[str]: ...


class HeartbeatPeers:
    """net.heartbeat's view in the core's terms. A beat names the peers it hears
    by tag; `names` are the nodes we know, looked up in it."""

    def __init__(self, heartbeats: Heartbeats) -> None:
        self._hb = heartbeats

    def peers(self, names: Collection[str]) -> dict[str, liveness.Peer]:
        view = self._hb.view()
        return {name: liveness.Peer(age=view.at - p.heard_at,
                                    hears=frozenset(n for n in names if p.beat.heard(n)),
                                    starved=p.beat.starved,
                                    restarting=p.beat.restarting)
                for name, p in view.peers.items()}

    def starved(self) -> bool:
        return self._hb.view().starved

    def unverified(self, within: float) -> frozenset[str]:
        """Known peers whose beats failed authentication in the last `within` s."""
        view = self._hb.view()
        return frozenset(n for n, at in view.forged.items() if view.at - at <= within)


def load_keys(directory: str) -> KeyRing | None:
    """Heartbeat keys from a mounted Secret: one file per key, named by its id
    (1-255); the highest id signs, every one verifies (rotation without a
    failover: add a key everywhere, then remove the old one). None when the
    directory holds no key (the Secret is optional in the manifests)."""
    keys: dict[int, bytes] = {}
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(Path(directory).iterdir()):
            if path.name.isdigit() and 0 < int(path.name) < 256 and path.is_file():
                keys[int(path.name)] = path.read_bytes().strip()
    return KeyRing(send_id=max(keys), keys=keys) if keys else None


def link_up(link: str) -> bool:
    """Carrier on the link that carries the addresses (sysfs: cheap enough per beat)."""
    try:
        return Path(f"/sys/class/net/{link}/carrier").read_text().strip() == "1"
    except OSError:
        return False


class Failover:
    def __init__(self, node: str, link: str, timing: liveness.Timing,
                 clock: Callable[[], float] = time.monotonic,
                 carrier: Callable[[str], bool] = link_up) -> None:
        self.node, self.link, self.timing = node, link, timing
        self._clock, self._carrier = clock, carrier
        self._started = clock()
        self._source: PeerSource | None = None
        self._fence: FenceSink | None = None
        self._fenced: frozenset[IPAddress] = frozenset()
        # None: the first reconcile syncs it, whatever an earlier run left
        self._quiet: frozenset[IPAddress] | None = None
        self._taken: dict[str, str] = {}
        self._claim_nodes: frozenset[str] = frozenset()
        self._last_heard: dict[str, float] = {}
        self._down: frozenset[str] = frozenset()
        self._judged_down: dict[str, float] = {}  # node -> when we judged it down
        self._takeovers: dict[IPAddress, float] = {}  # taken, not yet announced -> since
        self._lock = threading.Lock()  # the heartbeat thread and the event loop both ask
        self._auth_failed: dict[str, float] = {}
        self._alarms: set[str] = set()
        # The fence opens only once armed, and a lapse disarms it.
        self.armed = False

    def attach(self, source: PeerSource, fence: FenceSink | None = None) -> None:
        self._source, self._fence = source, fence

    def held(self, wants: Iterable[Want]) -> None:
        """After a reconcile: the fence guards exactly the addresses held, and
        silences those handed over to another node (quiet wants) for good.
        Quiet first: an address turning quiet must not answer for a moment."""
        wants = list(wants)
        ips = frozenset(w.interface.ip for w in wants)
        quiet = frozenset(w.interface.ip for w in wants if w.quiet)
        if self._fence is not None and quiet != self._quiet:
            self._fence.quiet(quiet)
            self._quiet = quiet
        if self._fence is not None and ips != self._fenced:
            self._fence.hold(ips)
            self._fenced = ips

    def heard(self) -> tuple[str, ...]:
        """The peers heard within the detection window (the IpNode reports them)."""
        ev = self.evidence()
        return tuple(sorted(n for n, p in ev.peers.items() if p.age <= self.timing.detect))

    def auth_failed(self, peer: str) -> None:
        """A beat in the name of a known peer failed authentication (heartbeat thread)."""
        now = self._clock()
        with self._lock:
            last = self._auth_failed.get(peer)
            self._auth_failed[peer] = now
            if last is None or now - last > ALARM_REPEAT:
                self._alarms.add(peer)
        if last is None or now - last > ALARM_REPEAT:
            _log.warning("heartbeat authentication failed: a wrong or rotated key, or a "
                         "forgery on the segment", node=self.node, peer=peer)

    def alarms(self) -> list[str]:
        """Peers whose authentication failed since the last call (for Events)."""
        with self._lock:
            out, self._alarms = sorted(self._alarms), set()
        return out

    # --- evidence ----------------------------------------------------------
    def evidence(self) -> liveness.Evidence:
        now = self._clock()
        with self._lock:
            known = set(self._last_heard) | self._claim_nodes | {self.node}
            peers = self._source.peers(known) if self._source else {}
            for name, peer in peers.items():
                self._last_heard[name] = max(self._last_heard.get(name, 0.0), now - peer.age)
            remembered = {n for n, at in self._last_heard.items() if now - at <= MEMBER_MEMORY}
        # every failed beat counts (the alarm callback below is rate-limited)
        unverified = self._source.unverified(self.timing.detect) if self._source else frozenset()
        return liveness.Evidence(
            me=self.node, peers=peers, unverified=unverified,
            members=frozenset(remembered | self._claim_nodes | {self.node}),
            link_up=self._carrier(self.link),
            starved=self._source.starved() if self._source else False,
            listening_for=now - self._started)

    def may_hold(self) -> bool:
        """Called by the heartbeat thread each interval: keep the fence open?"""
        ok = self.armed and liveness.may_hold(self.evidence(), self.timing)
        if not ok and self.armed:
            self.armed = False
            _log.warning("fence lapsed: not on the majority side of the segment",
                         node=self.node, link=self.link)
        return ok

    def may_rearm(self) -> bool:
        """The fence is shut and we are on the majority side again: read the
        claims afresh, reconcile on them, then `rearm`."""
        return not self.armed and liveness.may_hold(self.evidence(), self.timing)

    def rearm(self) -> None:
        """After a reconcile on claims listed since the lapse: open the fence again."""
        if self.may_rearm():
            self.armed = True
            _log.info("fence armed", node=self.node)

    # --- decisions ---------------------------------------------------------
    def select(self, claims: Iterable[Claim]) -> list[Claim]:
        """The claims this node holds now (see core.claims.to_hold)."""
        claims = list(claims)
        self._claim_nodes = frozenset(
            n for c in claims for n in (c.spec.node_name, *c.spec.standbys) if n)
        ev = self.evidence()
        if not self.armed:
            ev = liveness.Evidence(me=ev.me, peers=ev.peers, members=ev.members,
                                   link_up=False, listening_for=ev.listening_for)
        hold, taken = to_hold(claims, self.node, ev, self.timing, self._taken)
        cidrs = {c.name: c.spec.cidr for c in hold}
        now = self._clock()  # takeovers never announced (a link that speaks no ARP) expire
        self._takeovers = {ip: t for ip, t in self._takeovers.items() if now - t < MEMBER_MEMORY}
        for name in set(taken) - set(self._taken):
            _log.warning("taking over", claim=name, was=taken[name], node=self.node)
            with contextlib.suppress(ValueError):  # an unparsable cidr is refused later
                since = self._judged_down.get(taken[name], now)
                since = since if now - since < MEMBER_MEMORY else now  # a claim new to us
                self._takeovers[parse_ip(cidrs[name].split("/")[0])] = since
        self._taken = taken
        return hold

    def announced(self, ip: IPAddress) -> None:
        """An address's first announcement went out (net.holder): if we took it
        over, the takeover is complete on the wire."""
        since = self._takeovers.pop(ip, None)
        if since is not None:
            TAKEOVER_SECONDS.observe(self._clock() - since)

    async def watch(self, kick: asyncio.Event) -> None:
        """Re-plan whenever the set of nodes judged down changes, and as soon as
        a lapsed fence may be re-armed (a transient lapse, e.g. a late thread,
        must not keep the addresses silent until the next periodic pass)."""
        while True:
            await asyncio.sleep(self.timing.interval)
            ev = self.evidence()
            down = liveness.down_nodes(ev, self.timing, ev.members)
            if down != self._down:
                if down - self._down:
                    _log.warning("peers judged down", node=self.node,
                                 down=sorted(down - self._down))
                now = self._clock()
                self._judged_down = {n: self._judged_down.get(n, now) for n in down}
                self._down = down
                kick.set()
            elif not self.armed and liveness.may_hold(ev, self.timing):
                kick.set()
