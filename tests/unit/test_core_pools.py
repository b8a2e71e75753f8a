from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from externalip.core.addresses import claim_name, parse_ip
from externalip.core.model import Pool, PoolSpec
from externalip.core.pools import AddressPool, PoolError, build


def pool(cidr: str, ranges: tuple[tuple[str, str], ...] = (), **kw: bool) -> AddressPool:
    return build(Pool("p", PoolSpec(cidr=cidr, ranges=ranges, **kw)))


SEED = pool("192.168.0.248/29", (("192.168.0.249", "192.168.0.250"),
                                 ("192.168.0.252", "192.168.0.253")))


def test_claim_names_follow_the_seed() -> None:
    assert claim_name(parse_ip("10.0.0.7"), 24) == "10-0-0-7-24"
    assert claim_name(parse_ip("2001:db8::5"), 128) == "2001-db8--5-128"
    assert claim_name(parse_ip("::1"), 128) == "0--1-128"


def test_seed_pool_hands_out_only_its_ranges_in_order() -> None:
    used: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    while (ip := SEED.first_free({int(u) for u in used})) is not None:
        used.append(ip)
    assert [str(i) for i in used] == ["192.168.0.249", "192.168.0.250",
                                      "192.168.0.252", "192.168.0.253"]
    assert SEED.size() == 4
    assert not SEED.contains(parse_ip("192.168.0.251"))


def test_without_ranges_everything_but_the_network_address() -> None:
    p = pool("198.51.100.0/30")
    assert p.size() == 3
    assert str(p.first_free(set())) == "198.51.100.1"


def test_avoid_buggy_ips_skips_dot_zero_and_dot_255() -> None:
    p = pool("198.51.100.0/23", avoid_buggy_ips=True)
    assert p.size() == 511 - 3  # .100.255, .101.0, .101.255 (the network address is out anyway)
    assert not p.contains(parse_ip("198.51.100.255"))
    assert not p.contains(parse_ip("198.51.101.0"))
    assert str(p.first_free({int(parse_ip(f"198.51.100.{i}")) for i in range(1, 255)})) \
        == "198.51.101.1"


def test_huge_ipv6_pools_are_never_listed() -> None:
    p = pool("2001:db8::/64")
    assert p.size() == 2**64 - 1
    assert str(p.first_free({int(parse_ip("2001:db8::1"))})) == "2001:db8::2"
    assert str(p.first_free(set(), start=int(parse_ip("2001:db8::9")))) == "2001:db8::9"


@pytest.mark.parametrize(("cidr", "ranges", "words"), [
    ("2001:db8::/120", (("2001:db8::20", "2001:db8::10"),), "reversed"),
    ("192.0.2.0/24", (("192.0.2.10", "192.0.2.20"), ("192.0.2.15", "192.0.2.30")), "overlap"),
    ("192.0.2.0/24", (("198.51.100.1", "198.51.100.2"),), "not inside"),
])
def test_pools_crd_validation_cannot_catch_are_refused_with_a_reason(
        cidr: str, ranges: tuple[tuple[str, str], ...], words: str) -> None:
    with pytest.raises(PoolError, match=words):
        pool(cidr, ranges)


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=4),
       st.sets(st.integers(0, 255)), st.booleans())
def test_first_free_is_inside_the_ranges_and_never_used(
        pairs: list[tuple[int, int]], used_octets: set[int], buggy: bool) -> None:
    spans = sorted((min(a, b), max(a, b)) for a, b in pairs)
    disjoint: list[tuple[int, int]] = []
    for first, last in spans:
        if disjoint and first <= disjoint[-1][1]:
            continue
        disjoint.append((first, last))
    p = pool("203.0.113.0/24", tuple((f"203.0.113.{a}", f"203.0.113.{b}") for a, b in disjoint),
             avoid_buggy_ips=buggy)
    used = [parse_ip(f"203.0.113.{o}") for o in used_octets]
    ip = p.first_free({int(u) for u in used})
    allowed = {f"203.0.113.{o}" for a, b in disjoint for o in range(a, b + 1)
               if not (buggy and o in (0, 255))}
    free = allowed - {str(u) for u in used}
    assert p.size() == len(allowed)
    if ip is None:
        assert not free
    else:
        assert str(ip) in free
        assert int(ip) == min(int(parse_ip(f)) for f in free)
