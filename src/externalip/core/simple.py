"""Services -> wants, for simple mode. Pure.

Simple mode holds every `spec.externalIPs` address of every Service (and, when
asked, the LoadBalancer ingress IPs of the Services this installation serves)
on one interface with one prefix length per family. Several Services may name
one IP: it is held once, owned by all of them, and goes away with the last.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from externalip.core.holding import Want
from externalip.core.views import serves_load_balancer


@dataclass(frozen=True)
class SimpleOptions:
    link: str
    mask: int = 32
    mask6: int = 128
    lb_ingress: bool = False
    lb_class: str = ""
    default_class: bool = True


def service_ips(svc: Mapping[str, Any], opts: SimpleOptions) -> list[str]:
    spec = svc.get("spec") or {}
    ips = list(spec.get("externalIPs") or [])
    if opts.lb_ingress and serves_load_balancer(spec, opts.lb_class, opts.default_class):
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips += [i["ip"] for i in ingress if i.get("ip")]
    return ips


def wants_from_services(
    services: Iterable[Mapping[str, Any]], opts: SimpleOptions
) -> tuple[list[Want], dict[str, str]]:
    """The wants, and Services naming something that is not an IP (owner -> why)."""
    owners: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, set[str]] = {}
    invalid: dict[str, str] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for text in service_ips(svc, opts):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                invalid[key] = f"{text!r} is not an IP address"
                continue
            owners.setdefault(ip, set()).add(key)
    wants = [
        Want(
            ipaddress.ip_interface(f"{ip}/{opts.mask if ip.version == 4 else opts.mask6}"),
            opts.link,
            tuple(sorted(keys)),
        )
        for ip, keys in sorted(owners.items(), key=lambda kv: (kv[0].version, kv[0]))
    ]
    return wants, invalid
