"""The port guard: an address we hold for a Service reaches only the Service.

An External IP is a real address on the node's interface, so every host
service that listens on all addresses (sshd, the kubelet's 10250, our own
metrics) would answer on it too (issue 12, item 10). kube-vip and PureLB
close this with a firewall rule; so do we. kube-proxy DNATs the Service's
own traffic in prerouting, before the input hook sees it, so what reaches
the input hook with one of our addresses as destination is everything else.
One `inet` table drops it, except:
- the ports of the Services that own the address (`open4`/`open6`: address .
  protocol . port), for backends on the host network and for clusters
  without kube-proxy's DNAT;
- ICMP echo (ping still answers) and IPv6 neighbour discovery (unicast
  solicitations to the address itself are part of holding it);
- replies and errors of connections the node made itself (conntrack).

The guard never covers an address the node has as its own (the agent guards
only what it holds for claims). Like the ARP fence (net.nftfence), commands
go through libnftables, one transaction per change, and only the difference
from the last write is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from externalip import log
from externalip.core.addresses import IPAddress
from externalip.core.holding import Want
from externalip.net.holder import RECONCILE_ERRORS
from externalip.net.nftfence import BATCH, FenceError, Nft

_log = log.get(__name__)

TABLE = "inet externalip_guard"
Port = tuple[str, int]  # ("TCP", 80)
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


class PortGuard:
    """Keeps the guard's sets equal to the held addresses and their ports."""

    def __init__(self) -> None:
        self._nft = Nft()
        self._written: set[str] | None = None  # set elements as last written

    def install(self) -> None:
        """Create the table (idempotent; the sets of an earlier run stay)."""
        t = TABLE
        self._nft.run(f"""
add table {t}
add set {t} held4 {{ type ipv4_addr; }}
add set {t} held6 {{ type ipv6_addr; }}
add set {t} open4 {{ type ipv4_addr . inet_proto . inet_service; }}
add set {t} open6 {{ type ipv6_addr . inet_proto . inet_service; }}
add chain {t} input {{ type filter hook input priority filter - 5; policy accept; }}
add chain {t} guard4
add chain {t} guard6
flush chain {t} input
flush chain {t} guard4
flush chain {t} guard6
add rule {t} input ip daddr @held4 jump guard4
add rule {t} input ip6 daddr @held6 jump guard6
add rule {t} guard4 ct state established,related accept
add rule {t} guard4 icmp type echo-request accept
add rule {t} guard4 ip daddr . meta l4proto . th dport @open4 accept
add rule {t} guard4 counter drop
add rule {t} guard6 ct state established,related accept
add rule {t} guard6 icmpv6 type {{ echo-request, nd-neighbor-solicit, nd-neighbor-advert }} accept
add rule {t} guard6 ip6 daddr . meta l4proto . th dport @open6 accept
add rule {t} guard6 counter drop
""".encode())
        self._written = None

    def hold(self, ports: Mapping[IPAddress, Iterable[Port]]) -> None:
        """Guard exactly these addresses, each open on its Services' ports."""
        want = set(elements(ports))
        if want == self._written:
            return
        if self._written is not None:
            try:
                self._nft.run(_commands("delete", self._written - want)
                              + _commands("add", want - self._written))
                self._written = want
                return
            except FenceError:
                pass  # the sets are not what we wrote: replace them whole
        self._written = None
        flush = "".join(f"flush set {TABLE} {s}\n" for s in ("held4", "held6", "open4", "open6"))
        self._nft.run(flush.encode() + _commands("add", want))
        self._written = want

    def dropped(self) -> int:
        """Packets the guard dropped (its counters), for tests and metrics."""
        total = 0
        for chain in ("guard4", "guard6"):
            out = self._nft.run(f"list chain {TABLE} {chain}".encode())
            for line in out.splitlines():
                if "drop" in line and "packets" in line:
                    total += int(line.split("packets", 1)[1].split()[0])
        return total

    def remove(self) -> None:
        self._nft.run(f"add table {TABLE}\ndelete table {TABLE}".encode())
        self._written = None

    def close(self) -> None:
        self._nft.close()


def guard_held(guard: PortGuard | None, held: Iterable[Want],
               ports: Mapping[str, Iterable[Port]]) -> None:
    """Guard the held addresses, each open on the ports of its owners (claims in
    claims mode, Services in simple mode); a refusal by nft is logged and
    counted, and the next reconcile tries again."""
    if guard is None:
        return
    open_ports: dict[IPAddress, set[Port]] = {}
    for want in held:
        open_ports.setdefault(want.interface.ip, set()).update(
            p for owner in want.owners for p in ports.get(owner, ()))
    try:
        guard.hold(open_ports)
    except FenceError as exc:
        RECONCILE_ERRORS.labels("portguard").inc()
        _log.error("cannot update the port guard", error=str(exc))


def elements(ports: Mapping[IPAddress, Iterable[Port]]) -> list[str]:
    """`set element` lines' bodies: `held4 192.0.2.1`, `open4 192.0.2.1 . tcp . 80`.

    Protocols nft has no name for here are skipped (the API server only
    allows TCP, UDP and SCTP in a Service)."""
    out = []
    for ip, open_ports in ports.items():
        fam = "4" if ip.version == 4 else "6"
        out.append(f"held{fam} {ip}")
        for protocol, port in open_ports:
            proto = _PROTOCOLS.get(protocol.upper())
            if proto is not None and 0 < port < 65536:
                out.append(f"open{fam} {ip} . {proto} . {port}")
    return out


def _commands(verb: str, items: Iterable[str]) -> bytes:
    by_set: dict[str, list[str]] = {}
    for item in sorted(items):
        name, _, element = item.partition(" ")
        by_set.setdefault(name, []).append(element)
    lines = []
    for name, values in by_set.items():
        for i in range(0, len(values), BATCH):
            lines.append(f"{verb} element {TABLE} {name} {{ {', '.join(values[i:i + BATCH])} }}\n")
    return "".join(lines).encode()
