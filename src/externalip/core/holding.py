"""The address diff: what the node must hold vs. what the kernel has. Pure.

Both programs (claims-mode agent and simple mode) describe what they want as
`Want`s and read the kernel's addresses as `Have`s; `plan` says what to add,
what to keep (and refresh), what to remove and which wants it refuses, and why.
The safety rules live here, where they can be tested exhaustively:
- only addresses carrying our mark (`Have.ours`) are ever removed or refreshed;
- a want whose IP the node already has as its own, on any link, is refused
  (we neither take it over nor add a duplicate);
- one IP is held once: a second want for the same IP is refused;
- a quiet want (an address handed over and no longer answered for) is kept,
  never added;
- special addresses (loopback, multicast, link-local, ...; core.special) and
  the network and broadcast addresses of the node's own subnets are refused:
  this is the last line of defence, whatever the claims or Services say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from externalip.core.addresses import IPInterface
from externalip.core.special import special, subnet_edge


@dataclass(frozen=True)
class Want:
    """One address the program must hold: ip/prefix on a link, for its owners."""

    interface: IPInterface
    link: str
    owners: tuple[str, ...]  # claim name, or "namespace/name" of Services
    # An address handed over to another node (core.handover): never announced,
    # and once quiet not answered for either, only kept while the kernel has it.
    handover: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class Have:
    """One address the kernel has."""

    interface: IPInterface
    link: str
    ours: bool


@dataclass(frozen=True)
class Plan:
    add: tuple[Want, ...] = ()
    keep: tuple[Want, ...] = ()
    remove: tuple[Have, ...] = ()
    # owner -> reason, for wants we will not hold
    refused: dict[str, str] = field(default_factory=dict)
    # The node's own addresses (not ours), which the IpNode inventory reports
    # so that no scheduler ever gives them to a Service.
    own: tuple[IPInterface, ...] = ()

    @property
    def held(self) -> tuple[Want, ...]:
        """What the node holds once the plan is applied (if every step succeeds)."""
        return self.keep + self.add


def _order(want: Want) -> tuple[tuple[str, ...], int, int, int, str]:
    """A total order of wants, cheap to compute (str() of 5,000 addresses on
    every pass was a fifth of an agent's pass)."""
    interface = want.interface
    return (want.owners, interface.version, int(interface.ip), interface.network.prefixlen,
            want.link)


def plan(wants: Iterable[Want], haves: Iterable[Have], links: Collection[str]) -> Plan:
    haves = list(haves)
    own_subnets = [h.interface for h in haves if not h.ours]
    foreign: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, Have] = {}
    ours: dict[tuple[str, IPInterface], Have] = {}
    for have in haves:
        if have.ours:
            ours[(have.link, have.interface)] = have
        else:
            foreign.setdefault(have.interface.ip, have)

    add: list[Want] = []
    keep: list[Want] = []
    refused: dict[str, str] = {}
    taken: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, Want] = {}
    # Sorted so that, of two wants for one IP, the same one wins on every node
    # and in every run.
    for want in sorted(wants, key=_order):
        ip = want.interface.ip
        reason = special(ip) or subnet_edge(ip, own_subnets)
        if reason:
            reason = f"refusing to hold {reason}"
        elif ip in taken:
            reason = f"{ip} is already held here for {', '.join(taken[ip].owners)}"
        elif ip in foreign:
            reason = (
                f"{ip} is already configured on {foreign[ip].link} as this node's own "
                "address (not added by externalip); refusing to take it over"
            )
        elif want.link not in links:
            reason = f"interface {want.link!r} not found on this node"
        if reason:
            for owner in want.owners:
                refused[owner] = reason
            continue
        taken[ip] = want
        if (want.link, want.interface) in ours:
            keep.append(want)
        elif not want.quiet:
            add.append(want)

    wanted = {(w.link, w.interface) for w in keep}
    remove = tuple(
        h for key, h in sorted(ours.items(), key=lambda kv: str(kv[0])) if key not in wanted
    )
    return Plan(add=tuple(add), keep=tuple(keep), remove=remove, refused=refused,
                own=tuple(own_subnets))


def may_hold(wants: Iterable[Want], own: Collection[IPInterface]) -> list[Want]:
    """The wants `plan` could add (before it runs): not special, not a subnet
    edge, not one of the node's own addresses. The port guard covers these
    ahead of the add; covering the others would filter the node's own traffic."""
    own_ips = {i.ip for i in own}
    return [w for w in wants if w.interface.ip not in own_ips
            and not special(w.interface.ip) and not subnet_edge(w.interface.ip, list(own))]
