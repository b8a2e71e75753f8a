"""The heartbeat format: round trips, authentication, bounds, replay, and a fuzzed decoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from externalip.core.heartbeat import (
    MAX_DATAGRAM,
    Beat,
    BeatError,
    ForgedError,
    MalformedError,
    ReplayGuard,
    colliding,
    decode,
    encode,
    tag,
)

KEY_A, KEY_B = b"a" * 32, b"b" * 32
RING = {1: KEY_A, 2: KEY_B}
NOW = 1_764_560_000_000


def beat(node: str = "node-a", *, seq: int = 7, incarnation: int = 100, sent_ms: int = NOW,
         hears: tuple[str, ...] = ("node-b", "node-c"), starved: bool = False) -> Beat:
    return Beat.hearing(node, incarnation=incarnation, seq=seq, sent_ms=sent_ms, hears=hears,
                        starved=starved)


def test_round_trip_with_either_key_of_the_ring() -> None:
    for key_id, key in RING.items():
        sent = beat(starved=True)
        got = decode(encode(sent, key_id, key), RING)
        assert got == sent
        assert got.heard("node-b") and got.heard("node-c") and not got.heard("node-d")
        assert got.starved


def test_wrong_key_is_forged_and_names_the_claimed_sender() -> None:
    data = encode(beat(node="node-x"), 1, b"k" * 32)
    with pytest.raises(ForgedError) as err:
        decode(data, RING)
    assert err.value.node == "node-x" and err.value.key_id == 1


def test_unknown_key_id_is_forged() -> None:
    with pytest.raises(ForgedError, match="unknown key id 3") as err:
        decode(encode(beat(), 3, KEY_A), RING)
    assert err.value.node == "node-a"


def test_rotation_old_key_dropped_refuses_its_beats() -> None:
    data = encode(beat(), 1, KEY_A)
    assert decode(data, RING).node == "node-a"
    with pytest.raises(ForgedError):
        decode(data, {2: KEY_B})


def test_not_ours_and_truncated_are_malformed() -> None:
    data = encode(beat(), 1, KEY_A)
    for bad in (b"", b"hello world" * 10, b"XXXX" + data[4:], data[:-1], data + b"\0",
                data[:4] + b"\x02" + data[5:]):
        with pytest.raises(MalformedError):
            decode(bad, RING)


def test_any_flipped_bit_is_refused() -> None:
    data = encode(beat(), 1, KEY_A)
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BeatError):
            decode(bytes(flipped), RING)


def test_two_hundred_peers_with_longest_names_fit_one_datagram() -> None:
    longest = "n" * 253
    peers = [f"{i:03d}" + "p" * 250 for i in range(200)]
    data = encode(beat(node=longest, hears=tuple(peers)), 1, KEY_A)
    assert len(data) < 1400
    got = decode(data, RING)
    assert all(got.heard(p) for p in peers) and not got.heard(longest)


def test_too_many_peers_or_bad_fields_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="more than one datagram"):
        encode(beat(node="n" * 253, hears=tuple(str(i) for i in range(300))), 1, KEY_A)
    for bad in (beat(node=""), beat(node="n" * 254), beat(seq=-1), beat(sent_ms=2**64)):
        with pytest.raises(ValueError):
            encode(bad, 1, KEY_A)
    with pytest.raises(ValueError, match="keys at least"):
        encode(beat(), 1, b"short")
    with pytest.raises(ValueError, match="tags"):
        encode(Beat("a", 1, 1, NOW, frozenset({b"node-b"}), False), 1, KEY_A)


def test_colliding_ignores_repeated_names() -> None:
    # a real 40-bit collision cannot be built in a unit test; a name listed twice
    # must not be taken for one
    assert colliding(["a", "b", "c", "a"]) is None
    assert len({tag(f"node-{i}") for i in range(2000)}) == 2000


def test_replay_guard_refuses_old_and_repeated_beats() -> None:
    guard = ReplayGuard(max_skew_ms=2000)
    assert guard.admit(beat(seq=5), NOW) is None
    assert guard.admit(beat(seq=5), NOW) == "replay"
    assert guard.admit(beat(seq=4), NOW) == "replay"
    assert guard.admit(beat(seq=6), NOW) is None
    # a restart: a new incarnation, sent later, starts its seq again
    assert guard.admit(beat(incarnation=101, seq=0, sent_ms=NOW + 10), NOW) is None
    assert guard.admit(beat(incarnation=100, seq=99), NOW) == "replay"
    # senders are tracked separately
    assert guard.admit(beat(node="node-b", seq=1), NOW) is None


def test_replay_guard_takes_a_restart_whose_clock_went_back() -> None:
    guard = ReplayGuard()
    assert guard.admit(beat(incarnation=100, seq=50, sent_ms=NOW), NOW) is None
    # restarted with its clock stepped back: a lower incarnation, sent later than the last
    assert guard.admit(beat(incarnation=90, seq=1, sent_ms=NOW + 100), NOW + 100) is None
    assert guard.admit(beat(incarnation=90, seq=2, sent_ms=NOW + 200), NOW + 200) is None
    # the old incarnation's beats, replayed (even one we never saw), are older
    assert guard.admit(beat(incarnation=100, seq=51, sent_ms=NOW + 50), NOW + 300) == "replay"
    assert guard.admit(beat(incarnation=110, seq=1, sent_ms=NOW + 250), NOW + 300) is None
    # nor is a lower incarnation sent earlier
    assert guard.admit(beat(incarnation=80, seq=9, sent_ms=NOW + 150), NOW + 300) == "replay"


def test_replay_guard_refuses_beats_far_from_our_clock() -> None:
    guard = ReplayGuard(max_skew_ms=2000)
    assert guard.admit(beat(sent_ms=NOW - 2001), NOW) == "clock-skew"
    assert guard.admit(beat(sent_ms=NOW + 2001), NOW) == "clock-skew"
    assert guard.admit(beat(sent_ms=NOW - 1999), NOW) is None


def test_replay_guard_forget_lets_a_sender_start_over() -> None:
    guard = ReplayGuard()
    assert guard.admit(beat(seq=5), NOW) is None
    guard.forget("node-a")
    assert guard.admit(beat(seq=1), NOW) is None


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=60)
u64 = st.integers(0, 2**64 - 1)
beats = st.builds(Beat.hearing, names, incarnation=u64, seq=u64, sent_ms=u64,
                  hears=st.lists(names, max_size=40), starved=st.booleans())


def _decode_or_refuse(data: bytes) -> None:
    with contextlib.suppress(MalformedError, ForgedError):
        decode(data, RING)


@settings(max_examples=500)
@given(st.binary(max_size=MAX_DATAGRAM))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_behind_our_magic(tail: bytes) -> None:
    _decode_or_refuse(b"EIPH\x01" + tail)


@settings(max_examples=300)
@given(beats, st.sampled_from(sorted(RING)), st.data())
def test_fuzz_mutations_of_valid_datagrams(sent: Beat, key_id: int, data: st.DataObject) -> None:
    wire = encode(sent, key_id, RING[key_id])
    assert decode(wire, RING) == sent
    cut = data.draw(st.integers(0, len(wire) - 1))
    _decode_or_refuse(wire[:cut])
    flips = data.draw(st.lists(st.integers(0, len(wire) * 8 - 1), min_size=1, max_size=8,
                               unique=True))
    mutated = bytearray(wire)
    for bit in flips:
        mutated[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BeatError):  # some bit changed: the MAC or the structure refuses it
        decode(bytes(mutated), RING)
    spliced = data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, len(wire)))
    _decode_or_refuse(wire[:at] + spliced + wire[at:])
