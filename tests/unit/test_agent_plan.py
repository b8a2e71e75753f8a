"""The address diff: safety rules of DESIGN.md invariants 1, 2 and 4, without a kernel."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from externalip.core.holding import Have, Want, may_hold, plan

IF = ipaddress.ip_interface
LINKS = {"eth0", "eth1", "lo"}


def want(cidr: str, owner: str, link: str = "eth0") -> Want:
    return Want(IF(cidr), link, (owner,))


def test_missing_is_added_and_present_kept() -> None:
    p = plan([want("192.0.2.5/32", "a"), want("2001:db8::5/128", "b")],
             [Have(IF("192.0.2.5/32"), "eth0", ours=True)], LINKS)
    assert [w.owners for w in p.add] == [("b",)]
    assert [w.owners for w in p.keep] == [("a",)]
    assert p.remove == () and p.refused == {}


def test_ours_not_wanted_is_removed_foreign_never() -> None:
    haves = [Have(IF("192.0.2.5/32"), "eth0", ours=True),
             Have(IF("198.51.100.1/24"), "eth0", ours=False),
             Have(IF("192.0.2.6/32"), "eth1", ours=False)]
    p = plan([], haves, LINKS)
    assert p.remove == (haves[0],)


def test_address_the_node_owns_is_refused_on_any_link() -> None:
    haves = [Have(IF("198.51.100.1/24"), "eth1", ours=False)]
    p = plan([want("198.51.100.1/32", "c")], haves, LINKS)
    assert p.add == () and p.remove == ()
    assert "already configured on eth1" in p.refused["c"]


def test_restart_adopts_without_remove() -> None:
    # A restarted agent sees its marked address: it keeps it (refresh), no gap.
    haves = [Have(IF("192.0.2.5/32"), "eth0", ours=True)]
    p = plan([want("192.0.2.5/32", "a")], haves, LINKS)
    assert p.keep and not p.add and not p.remove


def test_moved_link_or_prefix_removes_then_adds() -> None:
    haves = [Have(IF("192.0.2.5/32"), "eth0", ours=True),
             Have(IF("192.0.2.7/32"), "eth0", ours=True)]
    p = plan([want("192.0.2.5/32", "a", "eth1"), want("192.0.2.7/24", "b")], haves, LINKS)
    assert {str(h.interface) for h in p.remove} == {"192.0.2.5/32", "192.0.2.7/32"}
    assert {(str(w.interface), w.link) for w in p.add} == {("192.0.2.5/32", "eth1"),
                                                           ("192.0.2.7/24", "eth0")}


def test_one_ip_held_once_and_deterministically() -> None:
    wants = [want("192.0.2.5/24", "z"), want("192.0.2.5/32", "a")]
    for order in (wants, wants[::-1]):
        p = plan(order, [], LINKS)
        assert [w.owners for w in p.add] == [("a",)]
        assert "already held here for a" in p.refused["z"]


def test_unknown_link_refused() -> None:
    p = plan([want("192.0.2.5/32", "a", "eth9")], [], LINKS)
    assert p.add == () and "eth9" in p.refused["a"]


ips = st.integers(0, 15).map(lambda i: f"192.0.2.{i}")
have_st = st.builds(lambda ip, pl, link, ours: Have(IF(f"{ip}/{pl}"), link, ours),
                    ips, st.sampled_from([24, 32]), st.sampled_from(sorted(LINKS)), st.booleans())
want_st = st.builds(lambda ip, pl, link, owner: Want(IF(f"{ip}/{pl}"), link, (owner,)),
                    ips, st.sampled_from([24, 32]), st.sampled_from([*LINKS, "eth9"]),
                    st.text("abcdef", min_size=1, max_size=3))


@given(st.lists(want_st, max_size=8), st.lists(have_st, max_size=8))
def test_properties(wants: list[Want], haves: list[Have]) -> None:
    p = plan(wants, haves, LINKS)
    # never touches a foreign address
    assert all(h.ours for h in p.remove)
    foreign_ips = {h.interface.ip for h in haves if not h.ours}
    # never adds or keeps an IP the node owns, nor one IP twice
    held_ips = [w.interface.ip for w in p.held]
    assert not foreign_ips & set(held_ips)
    assert len(held_ips) == len(set(held_ips))
    # every want is either held or refused with a reason
    for w in wants:
        assert w in p.held or all(p.refused.get(o) for o in w.owners) or any(
            o in [x for h in p.held for x in h.owners] for o in w.owners)
    # applying the plan gives exactly the held set among our addresses
    ours_after = {(h.link, h.interface) for h in haves if h.ours} - {
        (h.link, h.interface) for h in p.remove} | {(w.link, w.interface) for w in p.add}
    assert ours_after == {(w.link, w.interface) for w in p.held}


def test_may_hold_leaves_out_what_plan_refuses() -> None:
    """What the port guard covers ahead of an add: never the node's own address,
    its subnet's edges or special addresses (their traffic is the node's)."""
    own = [IF("192.0.2.10/24"), IF("2001:db8::10/64")]
    wants = [want("192.0.2.5/32", "ok"), want("192.0.2.10/32", "own"),
             want("192.0.2.255/32", "edge"), want("127.0.0.1/32", "loop"),
             want("2001:db8::5/128", "ok6"), want("fe80::1/128", "ll")]
    assert [w.owners[0] for w in may_hold(wants, own)] == ["ok", "ok6"]
    assert {w.owners[0] for w in plan(wants, [Have(i, "eth0", ours=False) for i in own],
                                      LINKS).add} == {"ok", "ok6"}
