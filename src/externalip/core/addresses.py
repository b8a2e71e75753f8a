"""Addresses and the names of the claims that reserve them.

Parsing and printing with `ipaddress` is slow (tens of microseconds an IPv6
address) and a pass parses and prints every claim's address: the results are
kept (addresses are immutable values), so a steady pass does neither.
"""

from __future__ import annotations

import functools
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


_CACHED = 1 << 17  # addresses remembered per function: more than any pass reads


@functools.lru_cache(maxsize=_CACHED)
def parse_ip(text: str) -> IPAddress:
    """An address as a Service may name it: no IPv6 zone (`fe80::1%eth0`).

    Python's ipaddress accepts zones; the API server's validation of a claim's
    cidr does not, and a zone means nothing on another node anyway.
    """
    ip = ipaddress.ip_address(text.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise ValueError(f"{text!r} carries an IPv6 zone (%{ip.scope_id}); name the address "
                         "without it")
    return ip


def family(ip: IPAddress) -> str:
    return "IPv4" if ip.version == 4 else "IPv6"


@functools.lru_cache(maxsize=_CACHED)
def text(ip: IPAddress) -> str:
    """str(ip), remembered."""
    return str(ip)


@functools.lru_cache(maxsize=_CACHED)
def claim_name(ip: IPAddress, prefix: int) -> str:
    """The seed's naming: 10.0.0.7/24 -> `10-0-0-7-24`.

    IPv6 uses the compressed form with ':' as '-' (2001:db8::5/128 ->
    `2001-db8--5-128`). A name must start with an alphanumeric, so an address
    starting with '::' gets a leading '0' (`0--1-128`), which is still unique.
    Because the name is a function of the address, the API server's name
    uniqueness makes a claim the reservation of its address.
    """
    name = f"{ip.compressed.replace(':', '-').replace('.', '-')}-{prefix}"
    return "0" + name if name.startswith("-") else name


def cidr(ip: IPAddress, prefix: int) -> str:
    return f"{ip}/{prefix}"


@functools.lru_cache(maxsize=_CACHED)
def claim_ip(cidr_text: str) -> IPAddress:
    return ipaddress.ip_interface(cidr_text).ip


def split_listen(addr: str) -> tuple[str, int]:
    """"host:port", ":port", "[v6]:port" or "v6:port" -> (host, port); ValueError if not.

    An empty host means every address. IPv6 hosts may come without brackets
    (the last colon starts the port), so `$(POD_IP):9440` works in a
    manifest for either family.
    """
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{addr!r} is not a listen address; use host:port, :port or "
                         "[v6-address]:port")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:  # a name ("localhost") is fine, unless it looks like an address
            if bracketed or "[" in host or "]" in host or ":" in host:
                raise ValueError(f"{addr!r}: {host!r} is not an address") from None
        else:
            if bracketed and ip.version != 6:
                raise ValueError(f"{addr!r}: only IPv6 addresses go in brackets")
    return host, int(port_text)
