"""Heartbeats between agents on one segment, in a thread of their own.

Issue 11: failures are detected where clients meet the node, on the link
that carries the addresses. Every `interval` this thread sends one signed
`Beat` (UDP broadcast on the link; ff02::1 on an IPv6-only link), takes in
its peers' beats, keeps the peer table, and refreshes the kernel fence
(`net.nftfence`) while the failover rules (`may_hold`, the caller's) allow
this node to answer for its addresses.

It runs apart from the asyncio loop, ARP handling and reconciling, because
the false failovers of heartbeat designs come from late timers more often
than from the network: it measures how late each of its own wake-ups is,
and when that lag passes `starve_after` it marks its beats `starved` for a
detection window, so its silence verdicts are known to be untrustworthy.
Datagrams that fail to decode, authenticate or pass the replay guard, or
that carry our own name from another process (two nodes with one name),
are dropped and counted by reason; they never count as life nor as silence.
Callbacks run in this thread: keep them short and thread-safe.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from externalip import log
from externalip.core.heartbeat import (
    Beat,
    ForgedError,
    KeyRing,
    MalformedError,
    Peer,
    PeerView,
    ReplayGuard,
    decode,
    encode,
)
from externalip.net.beatsocket import beat_socket, received
from externalip.net.nftfence import Fence, FenceError
from externalip.net.realtime import realtime

_log = log.get(__name__)

DEFAULT_PORT = 7947
ALARM_EVERY = 10.0  # seconds between log lines / callbacks about one peer's auth failures

DROPPED = Counter("externalip_heartbeat_dropped_total",
                  "Heartbeat datagrams dropped, by reason", ["reason"])
AUTH_ALARMS = Counter("externalip_heartbeat_auth_alarms_total",
                      "Beats in the name of a known peer whose MAC did not verify")
SENT = Counter("externalip_heartbeat_sent_total", "Heartbeats sent")
SEND_ERRORS = Counter("externalip_heartbeat_send_errors_total", "Heartbeats the kernel refused")
RECEIVED = Counter("externalip_heartbeat_received_total", "Heartbeats accepted from peers")
FENCE_ERRORS = Counter("externalip_heartbeat_fence_errors_total",
                       "Fence refreshes or lapses nftables refused")
LAG = Histogram("externalip_heartbeat_lag_seconds",
                "How late the heartbeat thread woke up for each beat",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
FRESH = Gauge("externalip_heartbeat_peers_fresh", "Peers heard within the detection window",
              ["link"])
LOST_AT_ONCE = Histogram("externalip_heartbeat_peers_lost_at_once",
                         "Peers that went stale in the same beat interval (when any did)",
                         buckets=(1, 2, 3, 5, 10, 20, 50, 100))


@dataclass
class _State:
    peers: dict[str, Peer] = field(default_factory=dict)
    fresh: frozenset[str] = frozenset()
    lag: float = 0.0
    late_at: float = float("-inf")
    forged: dict[str, float] = field(default_factory=dict)
    drops: Tally[str] = field(default_factory=Tally)


class Heartbeats:
    """The heartbeat thread of one node on one link; see the module docstring.

    Sockets (and the thread) are made in `start()`, in the network namespace
    of the calling thread. `may_hold(view)` is asked every interval: true
    refreshes `fence` for `fence_timeout`, false lapses it at once.
    `on_change(view)` is called when a peer becomes fresh or stale;
    `on_auth_failure(name)` when a beat in the name of a known peer (one we
    heard before, or in `members()`) fails authentication.
    """

    def __init__(self, node: str, link: str, port: int, keys: KeyRing, *,
                 interval: float = 0.1, detect: float = 0.5,
                 may_hold: Callable[[PeerView], bool] = lambda view: False,
                 on_change: Callable[[PeerView], None] = lambda view: None,
                 on_auth_failure: Callable[[str], None] = lambda name: None,
                 members: Callable[[], Collection[str]] = frozenset,
                 fence: Fence | None = None, fence_timeout: float = 0.25,
                 starve_after: float = 0.2, max_skew_ms: int = 2000,
                 restart_grace: float = 0.0, priority: int = 0) -> None:
        self.node, self.link, self.port, self.keys = node, link, port, keys
        self.interval, self.detect, self.restart_grace = interval, detect, restart_grace
        self.fence, self.fence_timeout, self.starve_after = fence, fence_timeout, starve_after
        self._may_hold, self._on_change = may_hold, on_change
        self.priority = priority
        self._on_auth_failure, self._members = on_auth_failure, members
        self._guard = ReplayGuard(max_skew_ms)
        self._state = _State()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._target: tuple[object, ...] = ()
        self._incarnation = time.time_ns() // 1_000_000
        self._seq = 0
        self._holding = True  # so a first "may not hold" lapses what an earlier run left
        self._started = float("inf")
        self._snapshot: PeerView | None = None  # the latest tick's view

    def start(self) -> None:
        try:
            self._sock, self._target = beat_socket(self.link, self.port)
        except OSError as err:
            raise OSError(err.errno, f"heartbeats on link {self.link!r}, port {self.port}: "
                                     f"{err.strerror or err}") from err
        self._stop.clear()
        self._started, self._snapshot = time.monotonic(), None
        self._thread = threading.Thread(target=self._run, name=f"heartbeats-{self.link}",
                                        daemon=True)
        self._thread.start()
        _log.info("heartbeats started", link=self.link, port=self.port,
                  target=str(self._target[0]), interval=self.interval, detect=self.detect)

    @property
    def running(self) -> bool:
        """The thread is beating (false once stopped, or if it died of a bug: see the log)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop sending and listening (the fence then lapses on its own timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(KeyError):  # no ghost series for a link we left
            FRESH.remove(self.link)

    def farewell(self, grace: float, repeats: int = 3) -> None:
        """Stopping to restart (SIGTERM): keep answering for our addresses for
        `grace` seconds, and tell the peers not to take them meanwhile. A
        restarted agent adopts both; one that does not come back is taken over
        once the grace has passed. Call after `stop()`."""
        if self.fence is not None and self._holding:
            try:
                self.fence.refresh(grace)
            except FenceError as err:
                _log.error("fence not extended for the restart", link=self.link,
                           error=str(err))
        sock, self._target = beat_socket(self.link, self.port)
        with sock:
            self._sock = sock
            with self._lock:  # the thread is stopped: not starved, just gone
                view = self._view(time.monotonic())
            for _ in range(repeats):  # a datagram may be lost
                self._send(view, restarting=True)
            self._sock = None

    def view(self) -> PeerView:
        """What the latest tick saw: ages count to that tick, not to now.

        The peer table changes only at ticks (beats are read then), so a view
        dated now would age every peer by the time since the tick: the event
        loop would see a live peer go silent, or a confirmation lapse, that
        the tick (and so the fence) never saw, and decide a takeover on
        evidence the heartbeat thread disagrees with. A tick older than a
        late wake-up (`interval + starve_after`) means this thread is
        starved: the view says so, so nobody accuses on it.
        """
        now = time.monotonic()
        with self._lock:
            view = self._snapshot or self._view(now)
        if now - view.at > self.interval + self.starve_after and not view.starved:
            view = replace(view, starved=True)
        return view

    def drops(self) -> dict[str, int]:
        """Datagrams dropped by this instance, by reason (the metric sums all instances)."""
        with self._lock:
            return dict(self._state.drops)

    def _view(self, now: float) -> PeerView:
        st = self._state
        # A peer whose agent said it restarts counts as heard through its grace:
        # our beats vouch for it, so an observer that started after its farewell
        # (and never heard it) is outvoted rather than taking its addresses.
        peers = {name: Peer(p.beat, p.heard_at, now - p.heard_at <= (
                     self.restart_grace if p.beat.restarting else self.detect))
                 for name, p in st.peers.items()}
        hears = frozenset(name for name, p in peers.items() if p.fresh)
        return PeerView(self.node, now, self._started, peers, hears, st.lag,
                        now - st.late_at <= self.detect, dict(st.forged))

    def _run(self) -> None:
        realtime(self.priority, self.link)
        try:
            self._loop()
        except Exception:  # we fall silent: peers see us stale and the fence lapses
            _log.exception("heartbeat thread failed", link=self.link)
            raise

    def _loop(self) -> None:
        """Wake once per interval: read what queued up, judge, beat.

        Beats are read only at ticks: the kernel dates each on arrival, and
        verdicts are only made at ticks, so reading them as they come would
        buy nothing and cost a wake-up per beat (most of the CPU at 30 nodes).
        """
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            now = time.monotonic()
            self._receive()
            self._tick(now - due)
            due += self.interval
            if due <= now:  # skip the beats a stall made us miss instead of bursting
                due = now + self.interval

    def _tick(self, lag: float) -> None:
        LAG.observe(lag)
        now = time.monotonic()
        with self._lock:
            self._state.lag = lag
            if lag > self.starve_after:
                self._state.late_at = now
            view = self._snapshot = self._view(now)
            lost = len(self._state.fresh - view.hears)
            changed = view.hears != self._state.fresh
            self._state.fresh = view.hears
        FRESH.labels(self.link).set(len(view.hears))
        if lost:
            LOST_AT_ONCE.observe(lost)
        self._send(view)
        if changed:
            self._callback(self._on_change, view)
        self._guard_fence(view)

    def _send(self, view: PeerView, restarting: bool = False) -> None:
        assert self._sock is not None
        self._seq += 1
        beat = Beat.hearing(self.node, incarnation=self._incarnation, seq=self._seq,
                            sent_ms=time.time_ns() // 1_000_000, hears=view.hears,
                            starved=view.starved, restarting=restarting)
        try:
            self._sock.sendto(encode(beat, self.keys.send_id, self.keys.keys[self.keys.send_id]),
                              self._target)
            SENT.inc()
        except OSError as err:  # link down, no route: peers will see us go stale
            SEND_ERRORS.inc()
            _log.debug("heartbeat not sent", link=self.link, error=str(err))
        except ValueError as err:
            SEND_ERRORS.inc()
            _log.error("heartbeat cannot be encoded", link=self.link, error=str(err))

    def _callback(self, function: Callable[[Any], None], argument: object) -> None:
        try:
            function(argument)
        except Exception:  # the caller's bug must not stop the beats
            _log.exception("heartbeat callback failed", link=self.link)

    def _guard_fence(self, view: PeerView) -> None:
        if self.fence is None:
            return
        try:
            hold = self._may_hold(view)
        except Exception:  # a bug in the rules must silence us, not answer
            _log.exception("may_hold failed; fencing", link=self.link)
            hold = False
        try:
            if hold:
                self.fence.refresh(self.fence_timeout)
            elif self._holding:
                self.fence.lapse()
            self._holding = hold
        except FenceError as err:
            FENCE_ERRORS.inc()
            _log.error("fence not updated", link=self.link, error=str(err))

    def _receive(self) -> None:
        """Take in every queued datagram, dated by when the kernel received it.

        After a stall the queue holds beats that arrived long ago: dating them
        by now would make peers that fell silent meanwhile look fresh.
        """
        assert self._sock is not None
        try:
            for data, age in received(self._sock):
                self._accept(data, time.monotonic() - age, time.time_ns() // 1_000_000)
        except OSError as err:
            _log.debug("heartbeat receive failed", link=self.link, error=str(err))

    def _drop(self, reason: str) -> None:
        DROPPED.labels(reason).inc()
        with self._lock:
            self._state.drops[reason] += 1

    def _accept(self, data: bytes, now: float, now_ms: int) -> None:
        try:
            beat = decode(data, self.keys.keys)
        except MalformedError:
            self._drop("malformed")
            return
        except ForgedError as err:
            self._drop("forged")
            if err.node is not None and self._known(err.node):
                self._alarm(err.node, err.key_id, now)
            return
        if beat.node == self.node:
            if beat.incarnation != self._incarnation:  # not our loopback: a namesake
                self._drop("own-name")
            return
        refusal = self._guard.admit(beat, now_ms)
        if refusal is not None:
            self._drop(refusal)
            return
        RECEIVED.inc()
        with self._lock:
            self._state.peers[beat.node] = Peer(beat, now, True)

    def _alarm(self, peer: str, key_id: int, now: float) -> None:
        """A known peer's name on a beat that failed authentication: a wrong key or an
        impostor. Counted every time; logged and called back once per ALARM_EVERY."""
        AUTH_ALARMS.inc()
        with self._lock:
            last = self._state.forged.get(peer, float("-inf"))
            self._state.forged[peer] = now
        if now - last >= ALARM_EVERY:
            _log.warning("heartbeat of a known peer failed authentication",
                         peer=peer, key_id=key_id, link=self.link)
            self._callback(self._on_auth_failure, peer)

    def _known(self, name: str) -> bool:
        with self._lock:
            if name in self._state.peers:
                return True
        return name in self._members()
