"""A kernel fence: the node stops answering ARP/ND for its addresses on its own.

Issue 11: the old holder must go silent within the failover bound even when
its agent is frozen (SIGSTOP) or starved, so silence must not need the agent
to run. One nftables table per link, in the `netdev` family, drops on the link's
ingress hook ARP requests whose target is one of our held IPv4 addresses
and neighbour solicitations whose target (the ICMPv6 payload at byte 8, 16
bytes) is one of our held IPv6 addresses, and on its egress hook ARP with a
held sender address and NA/NS that speak for a held address (gratuitous
ARP and unsolicited NA from an announcer that should have stopped, or the
kernel soliciting a neighbour from a held source), *unless* the set
`alive` holds the link's name. That element has a timeout: the heartbeat
thread refreshes it every interval while the failover rules allow us to
hold (`refresh`); when the thread stops, for whatever reason, the element
expires in the kernel and the node falls silent for those addresses while
keeping them (nothing is removed, so a recovering agent has nothing to
re-add). One table for both families means one set to refresh. The sets
`quiet4`/`quiet6` silence addresses the same way but unconditionally: a
drained node keeps an address it has handed over for a while, for the
packets still sent to its MAC, without answering for it (core.handover).

Commands go through libnftables (`libnftables.so.1`) over ctypes, with
contexts (netlink sockets) kept open: a refresh is one small transaction, no
process is spawned. Refreshes have a context of their own, so the heartbeat
thread never waits behind the agent replacing thousands of held addresses.
`hold` writes only the difference from what it wrote last. The contexts are
bound to the network namespace of the thread that creates the `Fence`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import socket
import threading
from collections.abc import Iterable

from externalip.core.addresses import IPAddress

BATCH = 1000  # elements per `add element` command; all batches form one transaction


class FenceError(RuntimeError):
    """nftables refused a command (the message is nft's own)."""


class Nft:
    """One libnftables context; commands in one buffer are one transaction."""

    _lib: ctypes.CDLL | None = None

    def __init__(self) -> None:
        lib = self._load()
        self._ctx = ctypes.c_void_p(lib.nft_ctx_new(0))
        if not self._ctx:
            raise FenceError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    @classmethod
    def _load(cls) -> ctypes.CDLL:
        if cls._lib is None:
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError as err:
                raise FenceError(f"libnftables.so.1 is needed for the fence "
                                 f"(Debian: libnftables1): {err}") from err
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            cls._lib = lib
        return cls._lib

    def run(self, commands: bytes) -> str:
        """Run `commands` as one transaction; its output, or FenceError with nft's message."""
        lib = self._load()
        with self._lock:
            if not self._ctx:
                raise FenceError("the fence is closed")
            rc = lib.nft_run_cmd_from_buffer(self._ctx, commands)
            out = (lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if rc != 0:
            raise FenceError(err.strip() or f"nft failed with {rc}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._load().nft_ctx_free(self._ctx)
                self._ctx = ctypes.c_void_p(None)


def table_name(link: str) -> str:
    """Our table for `link`: a name nft accepts whatever characters the link name has."""
    return "externalip_" + re.sub(r"[^A-Za-z0-9_]", "_", link)


class Fence:
    """The ARP/ND fence of one link; see the module docstring.

    `install()` is idempotent and keeps the held addresses and the alive
    element of a table left by an earlier run of the agent, so a restart
    does not open a window in which a fenced node answers again.
    """

    def __init__(self, link: str) -> None:
        if not link or '"' in link or len(link) > 15:
            raise ValueError(f"not a link name: {link!r}")
        try:
            socket.if_nametoindex(link)  # nft would take a missing device silently
        except OSError as err:
            raise FenceError(f"no link {link!r} in this network namespace") from err
        self.link = link
        self.table = f"netdev {table_name(link)}"
        self._nft = Nft()
        self._liveness = Nft()  # for refresh/lapse only: never queued behind a big hold
        self._refresh_commands: dict[int, bytes] = {}
        self._held: set[IPAddress] | None = None  # what the kernel has, as far as we know
        self._quiet: set[IPAddress] | None = None

    def install(self) -> None:
        t, link = self.table, self.link
        guard_in, guard_out = "iifname != @alive counter drop", "oifname != @alive counter drop"
        self._nft.run(f"""
add table {t}
add set {t} alive {{ type ifname; flags timeout; }}
add set {t} held4 {{ type ipv4_addr; }}
add set {t} held6 {{ typeof @th,64,128; }}
add chain {t} ingress {{ type filter hook ingress device "{link}" priority -100; policy accept; }}
add chain {t} egress {{ type filter hook egress device "{link}" priority -100; policy accept; }}
flush chain {t} ingress
flush chain {t} egress
add rule {t} ingress arp operation request arp daddr ip @held4 {guard_in}
add rule {t} ingress icmpv6 type nd-neighbor-solicit @th,64,128 @held6 {guard_in}
add rule {t} egress arp saddr ip @held4 {guard_out}
add rule {t} egress icmpv6 type nd-neighbor-advert @th,64,128 @held6 {guard_out}
add rule {t} egress icmpv6 type nd-neighbor-solicit @nh,64,128 @held6 {guard_out}
add set {t} quiet4 {{ type ipv4_addr; }}
add set {t} quiet6 {{ typeof @th,64,128; }}
add rule {t} ingress arp operation request arp daddr ip @quiet4 counter drop
add rule {t} ingress icmpv6 type nd-neighbor-solicit @th,64,128 @quiet6 counter drop
add rule {t} egress arp saddr ip @quiet4 counter drop
add rule {t} egress icmpv6 type nd-neighbor-advert @th,64,128 @quiet6 counter drop
add rule {t} egress icmpv6 type nd-neighbor-solicit @nh,64,128 @quiet6 counter drop
""".encode())
        self._held = self.held()
        self._quiet = self.held("quiet")

    def hold(self, addresses: Iterable[IPAddress]) -> None:
        """Fence exactly these addresses (one transaction, whatever their number).

        Only the difference from the last write is sent; if the kernel's sets
        turn out not to be what we wrote (someone edited them), they are
        replaced whole.
        """
        current, self._held = self._held, None  # unknown until the write succeeds
        self._held = self._sync("held", current, set(addresses))

    def quiet(self, addresses: Iterable[IPAddress]) -> None:
        """Never answer ARP/ND for these (held) addresses nor speak for them,
        whatever the liveness: addresses handed over to another node, kept
        only for the packets still sent to our MAC (core.handover)."""
        current, self._quiet = self._quiet, None
        self._quiet = self._sync("quiet", current, set(addresses))

    def _sync(self, sets: str, current: set[IPAddress] | None,
              want: set[IPAddress]) -> set[IPAddress]:
        if current == want:
            return want
        if current is not None:
            try:
                self._nft.run(self._elements("delete", current - want, sets)
                              + self._elements("add", want - current, sets))
                return want
            except FenceError:
                pass
        flush = f"flush set {self.table} {sets}4\nflush set {self.table} {sets}6\n".encode()
        self._nft.run(flush + self._elements("add", want, sets))
        return want

    def _elements(self, verb: str, addresses: Iterable[IPAddress], sets: str) -> bytes:
        v4, v6 = [], []
        for addr in addresses:
            if addr.version == 4:
                v4.append(str(addr))
            else:
                v6.append(f"0x{int(addr):032x}")
        lines = []
        for name, elements in ((f"{sets}4", v4), (f"{sets}6", v6)):
            for i in range(0, len(elements), BATCH):
                batch = ", ".join(elements[i:i + BATCH])
                lines.append(f"{verb} element {self.table} {name} {{ {batch} }}\n")
        return "".join(lines).encode()

    def refresh(self, timeout: float) -> None:
        """Let the node answer for its held addresses for `timeout` seconds from now."""
        ms = max(1, round(timeout * 1000))
        commands = self._refresh_commands.get(ms)
        if commands is None:
            commands = (f"flush set {self.table} alive\n"
                        f'add element {self.table} alive {{ "{self.link}" timeout {ms}ms }}'
                        ).encode()
            self._refresh_commands[ms] = commands
        self._liveness.run(commands)

    def lapse(self) -> None:
        """Fall silent for the held addresses now, without waiting for the timeout."""
        self._liveness.run(f"flush set {self.table} alive".encode())

    def held(self, sets: str = "held") -> set[IPAddress]:
        """The addresses the kernel fences ("held") or keeps quiet ("quiet"),
        read back, for checks and status."""
        found: set[IPAddress] = set()
        for version in (4, 6):
            out = self._nft.run(f"list set {self.table} {sets}{version}".encode())
            body = out.partition("elements = {")[2].partition("}")[0]
            for item in filter(None, (x.strip() for x in body.split(","))):
                found.add(ipaddress.ip_address(int(item, 16) if version == 6 else item))
        return found

    def remove(self) -> None:
        """Delete our table (also when it is not there); the fence is gone."""
        self._nft.run(f"add table {self.table}\ndelete table {self.table}".encode())
        self._held = self._quiet = None

    def close(self) -> None:
        """Release the nftables contexts (the table stays; `remove()` deletes it)."""
        self._nft.close()
        self._liveness.close()
