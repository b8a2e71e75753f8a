"""IP pools: which addresses a pool may hand out, and the first free one.

Ranges are inclusive; several ranges exclude the gaps between them; a pool
without ranges offers its whole network but the network address (the seed's
rule). Special addresses (core.special: loopback, multicast, link-local,
reserved, ...) are cut out of every pool, whatever its spec says. IPv6 pools
can be astronomically large, so nothing here ever lists a
pool: sizes are arithmetic and the search for a free address skips only the
used ones.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from externalip.core.addresses import IPAddress
from externalip.core.model import Pool
from externalip.core.special import special_ranges

MAX_REPORTED = 2**63 - 1  # status fields are int64


@dataclass(frozen=True)
class AddressPool:
    name: str
    version: int
    ranges: tuple[tuple[int, int], ...]  # inclusive, sorted, non-overlapping
    avoid_buggy_ips: bool
    auto_assign: bool
    pool: Pool

    @property
    def family(self) -> str:
        return "IPv4" if self.version == 4 else "IPv6"

    def _buggy(self, value: int) -> bool:
        return self.avoid_buggy_ips and self.version == 4 and value & 0xFF in (0, 255)

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.version or self._buggy(int(ip)):
            return False
        return any(first <= int(ip) <= last for first, last in self.ranges)

    def size(self) -> int:
        total = sum(last - first + 1 for first, last in self.ranges)
        if self.avoid_buggy_ips and self.version == 4:
            total -= sum(_buggy_inside(first, last) for first, last in self.ranges)
        return total

    def first_free(self, taken: Collection[int], start: int = 0) -> IPAddress | None:
        """The lowest usable address whose int is not in `taken` and not below
        `start`; None when the pool is full. Callers allocating many addresses
        pass one growing set and the last address found as `start`, which
        keeps a whole pass linear."""
        for first, last in self.ranges:
            value = max(first, start)
            while value <= last:
                if value in taken or self._buggy(value):
                    value += 1
                    continue
                return _address(self.version, value)
        return None


def _address(version: int, value: int) -> IPAddress:
    # ip_address(int) would read a small IPv6 value as IPv4
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _buggy_inside(first: int, last: int) -> int:
    """How many addresses ending in .0 or .255 lie in [first, last]."""
    def upto(n: int) -> int:  # count of v in [0, n] with v % 256 in (0, 255)
        if n < 0:
            return 0
        full, rest = divmod(n + 1, 256)
        return full * 2 + (1 if rest >= 1 else 0)  # .0 of the partial block; .255 needs all 256
    return upto(last) - upto(first - 1)


def _without(ranges: list[tuple[int, int]],
             holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted disjoint inclusive `ranges` minus sorted inclusive `holes`."""
    out: list[tuple[int, int]] = []
    for range_first, last in ranges:
        start = range_first
        for hole_first, hole_last in holes:
            if hole_last < start or hole_first > last:
                continue
            if hole_first > start:
                out.append((start, hole_first - 1))
            start = hole_last + 1
            if start > last:
                break
        if start <= last:
            out.append((start, last))
    return out


class PoolError(ValueError):
    """A pool that cannot be used; the message is for the user (condition, Event)."""


def build(pool: Pool) -> AddressPool:
    """Check a pool beyond what CRD validation can (e.g. reversed IPv6 ranges)."""
    try:
        network = ipaddress.ip_network(pool.spec.cidr, strict=False)
    except ValueError as exc:
        raise PoolError(f"spec.cidr {pool.spec.cidr!r} is not a network: {exc}") from exc
    ranges: list[tuple[int, int]] = []
    if pool.spec.ranges:
        for first_text, last_text in pool.spec.ranges:
            try:
                first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text)
            except ValueError as exc:
                raise PoolError(f"spec.ranges: {exc}") from exc
            if first.version != network.version or last.version != network.version:
                raise PoolError(f"range [{first}, {last}] is not of the family of {network}")
            if first not in network or last not in network:
                raise PoolError(f"range [{first}, {last}] is not inside {network}")
            if int(first) > int(last):
                raise PoolError(f"range [{first}, {last}] is reversed")
            ranges.append((int(first), int(last)))
        ranges.sort()
        for (_, last_a), (first_b, _) in itertools.pairwise(ranges):
            if first_b <= last_a:
                raise PoolError("spec.ranges overlap")
    else:
        start = int(network.network_address) + (1 if network.num_addresses > 1 else 0)
        ranges.append((start, int(network.broadcast_address)))
    usable = _without(ranges, special_ranges(network.version))
    if not usable:
        raise PoolError(f"pool {pool.name!r} has no usable address: every address in it is "
                        "special (loopback, multicast, link-local, reserved, ...)")
    return AddressPool(
        name=pool.name,
        version=network.version,
        ranges=tuple(usable),
        avoid_buggy_ips=pool.spec.avoid_buggy_ips,
        auto_assign=pool.spec.auto_assign,
        pool=pool,
    )


@dataclass(frozen=True)
class Usage:
    """How much of a pool is in use, as the scheduler reports it and status shows it."""

    total: int
    used: int
    free: int


def usage(pool: AddressPool, addresses: Iterable[IPAddress]) -> Usage:
    """An address is used when a claim holds it, whether it was allocated from
    the pool or requested by hand inside it. Sizes are capped to what the
    status fields (int64) can carry."""
    total = min(pool.size(), MAX_REPORTED)
    used = len({ip for ip in addresses if pool.contains(ip)})
    return Usage(total, used, max(0, total - used))
