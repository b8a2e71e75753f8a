"""Heartbeat datagrams between agents on one segment: the format and its checks.

Pure: bytes in, bytes out, the receiver's clock passed in. The transport
(`externalip.net.heartbeat`) sends one `Beat` per interval and feeds what it
receives through `decode` and a `ReplayGuard`; the failover rules
(`core.liveness`) read its `PeerView`, defined here so that they can.

Wire format, version 1, network byte order::

    magic "EIPH" | version u8 | key id u8 | flags u8 | name length u8
    incarnation u64 | seq u64 | sent_ms u64 | hears count u16
    name (UTF-8, 1..253 bytes) | hears (count x 5-byte tags) | MAC (16 bytes)

The MAC is HMAC-SHA256, truncated to 16 bytes, over every byte before it,
keyed by the key the key id names. A receiver accepts any key of its ring
(two during a rotation), so a key can be rotated without a failover.

`hears` is bounded by sending, for each peer heard, a 5-byte tag (the first
5 bytes of SHA-256 of its name) instead of the name: 200 peers with a
253-byte sender name make a 1,303-byte datagram. Tags are looked up, never
reversed (`Beat.heard(name)`), so no shared member list has to agree between
sender and receiver. Two names of one cluster share a tag with probability
n^2 / 2^41 (2e-8 at 200 nodes, 5e-7 at 1,000); `colliding` finds such a
pair in a member list so the caller can say so instead of trusting it.
`encode` refuses a beat that would not fit in `MAX_DATAGRAM` bytes (one
unfragmented IPv6/UDP datagram on a 1,500-byte MTU): about 229 heard peers,
which is where a full mesh stops making sense anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MAGIC = b"EIPH"
VERSION = 1
TAG_BYTES = 5
MAC_BYTES = 16
MAX_NAME_BYTES = 253
MAX_DATAGRAM = 1452  # 1500 - 40 (IPv6) - 8 (UDP)
MIN_KEY_BYTES = 16
_STARVED = 0x01
_RESTARTING = 0x02

_HEADER = struct.Struct("!4sBBBBQQQH")
_U64 = 2**64


def tag(node: str) -> bytes:
    """The 5-byte tag that stands for `node` in another node's `hears`."""
    return hashlib.sha256(node.encode()).digest()[:TAG_BYTES]


def colliding(members: Iterable[str]) -> tuple[str, str] | None:
    """Two member names that share a tag (their `heard` answers are ambiguous), or None."""
    seen: dict[bytes, str] = {}
    for name in sorted(set(members)):
        other = seen.setdefault(tag(name), name)
        if other != name:
            return (other, name)
    return None


@dataclass(frozen=True)
class Beat:
    """One heartbeat: "I, `node`, am alive; these are the peers I hear".

    incarnation: chosen at each start of the sender (its wall clock in ms),
        so a restarted node is told apart from a replay of its old beats.
    seq: counts up within one incarnation.
    sent_ms: the sender's wall clock (ms since the epoch) when it sent.
    hears: tags (`tag(name)`) of the peers the sender heard within its
        detection window; ask with `heard(name)`.
    starved: the sender's own loop is running late: its silence verdicts
        are not to be trusted, so it must neither accuse nor vote.
    restarting: the sender's agent is stopping to restart (SIGTERM, a rolled
        DaemonSet); its addresses stay up meanwhile, so its silence is not
        its death until the restart grace has passed.
    """

    node: str
    incarnation: int
    seq: int
    sent_ms: int
    hears: frozenset[bytes]
    starved: bool
    restarting: bool = False

    @classmethod
    def hearing(cls, node: str, *, incarnation: int, seq: int, sent_ms: int,
                hears: Iterable[str], starved: bool = False, restarting: bool = False
                ) -> Beat:
        """A beat built from the names of the peers heard."""
        return cls(node, incarnation, seq, sent_ms, frozenset(map(tag, hears)), starved,
                   restarting)

    def heard(self, peer: str) -> bool:
        return tag(peer) in self.hears


class BeatError(ValueError):
    """A datagram that is not a beat we accept."""


class MalformedError(BeatError):
    """Not ours, truncated, or with lengths or fields that do not add up."""


class ForgedError(BeatError):
    """Well formed, but the MAC does not verify (or its key id is unknown).

    `node` is the sender name the datagram claims (None if it is not valid
    UTF-8): a forged beat in the name of a known peer is an alarm (a wrong
    key or an attacker), never evidence of that peer's silence or life.
    """

    def __init__(self, message: str, node: str | None, key_id: int) -> None:
        super().__init__(message)
        self.node = node
        self.key_id = key_id


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")[:MAC_BYTES]


def encode(beat: Beat, key_id: int, key: bytes) -> bytes:
    """The signed datagram for `beat`; ValueError if it cannot be sent as one."""
    name = beat.node.encode()
    if not 1 <= len(name) <= MAX_NAME_BYTES:
        raise ValueError(f"node name must be 1..{MAX_NAME_BYTES} bytes of UTF-8: {beat.node!r}")
    if not 0 <= key_id <= 255 or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key id must be 0..255 and keys at least {MIN_KEY_BYTES} bytes")
    for number in (beat.incarnation, beat.seq, beat.sent_ms):
        if not 0 <= number < _U64:
            raise ValueError(f"incarnation, seq and sent_ms must fit in 64 bits: {beat}")
    if any(len(t) != TAG_BYTES for t in beat.hears):
        raise ValueError(f"hears holds {TAG_BYTES}-byte tags (use Beat.hearing or tag())")
    tags = sorted(beat.hears)
    size = _HEADER.size + len(name) + TAG_BYTES * len(tags) + MAC_BYTES
    if size > MAX_DATAGRAM:
        raise ValueError(f"a beat hearing {len(tags)} peers takes {size} bytes, "
                         f"more than one datagram of {MAX_DATAGRAM}")
    flags = (_STARVED if beat.starved else 0) | (_RESTARTING if beat.restarting else 0)
    body = _HEADER.pack(MAGIC, VERSION, key_id, flags, len(name),
                        beat.incarnation, beat.seq, beat.sent_ms, len(tags))
    body += name + b"".join(tags)
    return body + _mac(key, body)


def decode(data: bytes, keys: Mapping[int, bytes]) -> Beat:
    """The beat in `data`, authenticated by one of `keys` (key id -> key).

    Raises MalformedError or ForgedError, nothing else, whatever the bytes.
    """
    if len(data) < _HEADER.size + 1 + MAC_BYTES:
        raise MalformedError(f"{len(data)} bytes is too short for a beat")
    magic, version, key_id, flags, name_len, incarnation, seq, sent_ms, count = (
        _HEADER.unpack_from(data))
    if magic != MAGIC:
        raise MalformedError("not a heartbeat (bad magic)")
    if version != VERSION:
        raise MalformedError(f"unsupported heartbeat version {version}")
    expected = _HEADER.size + name_len + TAG_BYTES * count + MAC_BYTES
    if name_len == 0 or len(data) != expected:
        raise MalformedError(f"lengths do not add up: {len(data)} bytes, expected {expected}")
    name_end = _HEADER.size + name_len
    try:
        node: str | None = data[_HEADER.size:name_end].decode()
    except UnicodeDecodeError:
        node = None
    key = keys.get(key_id)
    if key is None:
        raise ForgedError(f"unknown key id {key_id}", node, key_id)
    if not hmac.compare_digest(_mac(key, data[:-MAC_BYTES]), data[-MAC_BYTES:]):
        raise ForgedError(f"MAC does not verify with key id {key_id}", node, key_id)
    if node is None:
        raise MalformedError("sender name is not UTF-8")
    if flags & ~(_STARVED | _RESTARTING):
        raise MalformedError(f"unknown flags {flags:#x}")
    raw = data[name_end:-MAC_BYTES]
    hears = frozenset(raw[i:i + TAG_BYTES] for i in range(0, len(raw), TAG_BYTES))
    if len(hears) != count:
        raise MalformedError("a peer is listed twice in hears")
    return Beat(node, incarnation, seq, sent_ms, hears, bool(flags & _STARVED),
                bool(flags & _RESTARTING))


Refusal = Literal["replay", "clock-skew"]


class ReplayGuard:
    """Refuses beats that are not newer than what a sender already said.

    Within one incarnation of a sender, seq must increase. A beat of another
    incarnation is taken if it was sent later (sent_ms) than the last beat
    taken, whatever its incarnation number: a node that restarts after its
    clock was stepped back gets a lower incarnation, and is then refused
    only until its clock passes the last beat we took, not forever; and a
    recorded beat of an earlier incarnation is older than the new one's.
    Either way a recorded beat of a node that has since died cannot make it
    look alive again. A beat whose sent_ms is more than `max_skew_ms` away from
    the receiver's clock is refused too: that bounds what a recording can do
    to a receiver that has just started and remembers nothing (it needs
    clocks synchronised to well within `max_skew_ms`, as NTP keeps them).
    """

    def __init__(self, max_skew_ms: int = 2000) -> None:
        self.max_skew_ms = max_skew_ms
        self._last: dict[str, tuple[int, int, int]] = {}  # incarnation, seq, sent_ms

    def admit(self, beat: Beat, now_ms: int) -> Refusal | None:
        """None if `beat` is new (and remember it), else why it is refused."""
        if abs(beat.sent_ms - now_ms) > self.max_skew_ms:
            return "clock-skew"
        last = self._last.get(beat.node)
        if last is not None:
            incarnation, seq, sent_ms = last
            # another incarnation is ordered by the sender's clock: the beats of an
            # earlier one were all sent before the restart
            newer = beat.seq > seq if beat.incarnation == incarnation else beat.sent_ms > sent_ms
            if not newer:
                return "replay"
        self._last[beat.node] = (beat.incarnation, beat.seq, beat.sent_ms)
        return None

    def forget(self, node: str) -> None:
        """Drop what we remember of `node` (it left the cluster)."""
        self._last.pop(node, None)


@dataclass(frozen=True)
class KeyRing:
    """The keys beats are signed with: `send_id` signs, any of `keys` verifies."""

    send_id: int
    keys: Mapping[int, bytes]

    def __post_init__(self) -> None:
        if self.send_id not in self.keys:
            raise ValueError(f"the sending key id {self.send_id} is not in the ring")


@dataclass(frozen=True)
class Peer:
    beat: Beat        # the last beat accepted from it
    heard_at: float   # time.monotonic() when it arrived
    fresh: bool       # heard within the detection window


@dataclass(frozen=True)
class PeerView:
    """What this node knows at monotonic time `at`; a copy, safe to keep."""

    node: str
    at: float
    started: float          # when these heartbeats started: listen a window before claiming
    peers: Mapping[str, Peer]
    hears: frozenset[str]   # our own: the peers fresh now (what our beats say)
    lag: float              # how late our latest wake-up was, seconds
    starved: bool           # a wake-up within the detection window was too late
    # known peers' names on beats that failed authentication -> monotonic time of
    # the latest: a wrong key or an impostor, to be alarmed about, never taken as
    # that peer's life (and, the rules may decide, not as its silence either)
    forged: Mapping[str, float] = field(default_factory=dict)

    def fresh(self, peer: str) -> bool:
        return peer in self.hears
