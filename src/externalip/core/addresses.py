"""Addresses and the names of the claims that reserve them."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.strip())


def family(ip: IPAddress) -> str:
    return "IPv4" if ip.version == 4 else "IPv6"


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


def claim_ip(cidr_text: str) -> IPAddress:
    return ipaddress.ip_interface(cidr_text).ip
