"""The failover rules: who is down, who may answer, who takes an address over. Pure.

Every agent hears its peers' signed heartbeats on the segment that carries
the addresses, where clients meet the nodes. Each heartbeat says which
peers its sender hears. From that evidence every agent applies the same
three rules, so agents that see the same thing decide the same thing,
without a leader and without a write to the API:

- `is_down(node)`: we do not hear the node within `detect`, and a strict
  majority of the live observers (ourselves and every peer we hear that is
  not itself starved) do not hear it either. A member we have not heard
  once since we started is starting, not down, for `restart_grace` (the
  agents of a cluster that boots or regains power come up seconds apart;
  the Lease backstop moves the claims of one that never comes). One lossy observer moves
  nothing; observers that are dead do not count, so two nodes, or three
  survivors of a rack of five, still decide. A verdict comes from fresh,
  direct observations only: nobody relays "X is dead".
- `may_hold()`: we keep answering for our addresses only while our link is
  up and we are on the majority side: we plus the members that heard us
  within `confirm` make more than half of the members. A cluster of two
  cannot tell a dead peer from a cut cable and trusts its own link.
  The kernel fence (net.nftfence) enforces this without the agent running:
  a frozen agent stops refreshing it and goes silent.
- `takes_over(claim)`: a claim's ordered standbys take it in order: the
  first standby that is not down takes it, once its holder is down. Every
  standby computes the same answer from the same evidence.

An agent whose own loop runs late (`starved`) neither accuses nor votes:
late timers, not the network, cause most false failovers in the peers.
docs/failover.md has the timing argument (fence + scheduling delay below
detection).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

# How much longer a peer whose last heartbeat said it runs late may be silent.
STARVED_STRETCH = 3.0


@dataclass(frozen=True)
class Timing:
    """Seconds. `confirm` plus the worst scheduling delay must stay below `detect`."""

    interval: float = 0.1  # how often heartbeats are sent
    detect: float = 0.5  # silence after which a peer is suspected
    confirm: float = 0.3  # how recent a peer's "I hear you" must be for us to keep answering
    startup: float = 0.5  # an agent listens this long before it takes anything over
    restart_grace: float = 30.0  # a peer that said it restarts is not down before this


@dataclass(frozen=True)
class Peer:
    """What we know of one peer: how long ago we heard it, and what it said."""

    age: float  # seconds since its last valid heartbeat reached us
    hears: frozenset[str] = frozenset()
    starved: bool = False
    restarting: bool = False  # its last beat said its agent restarts (SIGTERM)


@dataclass(frozen=True)
class Evidence:
    """One agent's view of the segment at one instant."""

    me: str
    peers: Mapping[str, Peer] = field(default_factory=dict)
    # Nodes that run an agent (from the API: IpNodes with a live Lease, and
    # every peer heard); a dead member counts until its Lease lapses.
    members: frozenset[str] = frozenset()
    link_up: bool = True
    starved: bool = False  # our own loop is late
    listening_for: float = float("inf")  # seconds since we started listening
    # Peers whose beats failed authentication lately: an alarm, never silence
    # (a key rotated on one node only must not look like its death).
    unverified: frozenset[str] = frozenset()


def _fresh(ev: Evidence, node: str, window: float) -> bool:
    peer = ev.peers.get(node)
    return peer is not None and peer.age <= window


def observers(ev: Evidence, t: Timing, about: str) -> list[str]:
    """The live peers whose word about `about` counts (not `about`, not starved)."""
    return sorted(n for n, p in ev.peers.items()
                  if n not in (about, ev.me) and p.age <= t.detect and not p.starved)


def is_down(ev: Evidence, t: Timing, node: str) -> bool:
    """A strict majority of live observers, us included, do not hear `node`."""
    if node == ev.me or ev.starved or not ev.link_up or ev.listening_for < t.startup:
        return False
    if node in ev.unverified:
        return False
    if _fresh(ev, node, t.detect):
        return False
    peer = ev.peers.get(node)
    if peer is None and ev.listening_for < t.restart_grace:
        return False  # never heard since we started: still starting (agents boot apart)
    if peer is not None and peer.restarting and peer.age <= t.restart_grace:
        return False  # its addresses stay up while its agent restarts
    if peer is not None and peer.starved and peer.age <= t.detect * STARVED_STRETCH:
        return False  # it said it runs late: a late timer is not a death (Lifeguard)
    voters = observers(ev, t, node)
    silent = 1 + sum(1 for n in voters if node not in ev.peers[n].hears)
    return 2 * silent > 1 + len(voters)


def may_hold(ev: Evidence, t: Timing) -> bool:
    """We are on the majority side of the segment, so answering cannot split the brain."""
    if not ev.link_up:
        return False
    # a peer whose beats fail authentication is neither silence nor a vote
    others = (ev.members | set(ev.peers)) - {ev.me} - ev.unverified
    if not others:
        return True
    confirming = sum(1 for n in others
                     if _fresh(ev, n, t.confirm) and ev.me in ev.peers[n].hears)
    side, total = 1 + confirming, 1 + len(others)
    if total <= 2:
        return True  # two nodes: nothing to outvote a cut cable; our link is up
    return 2 * side > total


def takes_over(ev: Evidence, t: Timing, holder: str, standbys: Sequence[str]) -> bool:
    """Whether we take a claim now: its holder is down, and so is every standby before us."""
    if ev.me not in standbys or holder == ev.me or not is_down(ev, t, holder):
        return False
    for standby in standbys:
        if standby == ev.me:
            return may_hold(ev, t)
        if not is_down(ev, t, standby):
            return False
    return False


def down_nodes(ev: Evidence, t: Timing, nodes: Collection[str]) -> frozenset[str]:
    return frozenset(n for n in nodes if is_down(ev, t, n))


def backstop_alive(lease_alive: Collection[str],
                   heard_by: Mapping[str, Collection[str]]) -> frozenset[str]:
    """The scheduler's slow backstop: a node is alive while its Lease is, or while
    an agent whose Lease is alive hears it on the segment (a node cut off from
    the API but not from its peers keeps its claims: nothing moves)."""
    alive = set(lease_alive)
    for observer in lease_alive:
        alive.update(heard_by.get(observer, ()))
    return frozenset(alive)
