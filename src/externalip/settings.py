"""Command-line flags, each also settable from the environment.

One table describes every flag: its name, default, help and the programs that
take it. The seed's flag names and defaults are kept; an environment variable
EXTERNALIP_<FLAG> (dashes as underscores, upper case) sets the default, and
the flag on the command line wins over it.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from externalip.core.addresses import split_listen

AGENT, SCHEDULER, SIMPLE, STATUS = "agent", "scheduler", "simple", "status"
DRAIN = "drain"  # drain and undrain
ALL = (AGENT, SCHEDULER, SIMPLE)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """Parse a Go-style duration ("2s", "500ms", "1m") or plain seconds into seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; use a number of seconds or e.g. 500ms, 2s, 1m"
        )
    return float(match.group(1)) * _UNIT[match.group(2)]


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def listen_address(text: str) -> str:
    """A listen address for our HTTP endpoints (core.addresses.split_listen), or "" (disabled)."""
    if text.strip():
        try:
            split_listen(text.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    return text.strip()


@dataclass(frozen=True)
class Flag:
    name: str
    default: Any
    help: str
    programs: tuple[str, ...]
    kind: Any = str
    choices: tuple[str, ...] | None = None

    @property
    def env(self) -> str:
        return "EXTERNALIP_" + self.name.upper().replace("-", "_")


FLAGS: tuple[Flag, ...] = (
    Flag("kubeconfig", "", "kubeconfig file; empty means in-cluster config, then ~/.kube/config",
         (*ALL, STATUS, DRAIN)),
    Flag("namespace", "externalip", "namespace holding our Leases and Events",
         (AGENT, SCHEDULER, STATUS)),
    Flag("iface", "eth0", "interface that holds the IPs (a claim's spec.link overrides it)",
         (AGENT, SIMPLE)),
    Flag("hostname", socket.gethostname(),
         "name of this node (IpNode, Lease and claims' spec.nodeName); default the OS hostname",
         (AGENT,)),
    Flag("hb", 10.0, "how often the agent renews its Lease (the slow backstop; failures are "
         "detected on the data plane, see --peer-*)", (AGENT,), duration),
    Flag("lease-duration", 40.0,
         "how long the agent's Lease stays valid without renewal; the scheduler's backstop "
         "declares a node dead after it, unless live peers still hear it",
         (AGENT,), duration),
    Flag("peer-key-dir", "",
         "directory of heartbeat keys (a mounted Secret: files named by key id 1-255, "
         "16+ bytes each; the highest id signs, all are accepted); empty disables "
         "data-plane failure detection (the Lease alone then moves addresses)",
         (AGENT,)),
    Flag("peer-port", 7473, "UDP port of the heartbeats between agents on the segment",
         (AGENT,), int),
    Flag("peer-interval", 0.1, "how often an agent sends its heartbeat", (AGENT,), duration),
    Flag("peer-detect", 0.5,
         "silence after which a peer is suspected; a strict majority of live observers "
         "must agree before it is taken over", (AGENT,), duration),
    Flag("restart-grace", 20.0,
         "an agent stopped with SIGTERM (a restart, a rolled DaemonSet) keeps answering for "
         "its addresses this long (keep it below --addr-lifetime minus a third of it), and "
         "its peers take nothing over meanwhile; one that is "
         "killed or dies is taken over in under a second", (AGENT,), duration),
    Flag("peer-priority", 10,
         "real-time (SCHED_RR) priority of the heartbeat thread, as keepalived runs VRRP, so "
         "a busy node's beats and fence refreshes are not late; needs CAP_SYS_NICE, "
         "without it (or 0) the thread runs at normal priority", (AGENT,), int),
    Flag("peer-confirm", 0.3,
         "a holder answers for its addresses only while peers confirmed hearing it this "
         "recently (must stay below --peer-detect)", (AGENT,), duration),
    Flag("handover-delay", 5.0,
         "a drained node keeps an address this long after the new holder announced it, "
         "silent (no ARP/ND answers) but serving packets still sent to its MAC, then "
         "removes it (make-before-break; docs/maintenance.md)", (AGENT,), duration),
    Flag("resync", 20.0, "full re-sync period (re-adds addresses removed by hand)",
         (AGENT, SIMPLE, SCHEDULER), duration),
    Flag("status-interval", 10.0,
         "at most one write per this interval, in a burst of changes, of the statuses that "
         "count Services: the agent's IpNode address list, the scheduler's pool counts "
         "(the first change after a quiet interval, and changes readers need at once, such "
         "as a pool becoming exhausted, are written at once; the latest state always goes "
         "out); 0 writes every change", (AGENT, SCHEDULER), duration),
    Flag("garp-interval", 0.0,
         "repeat gratuitous ARP / unsolicited NA for held IPs this often; 0 disables",
         (AGENT, SIMPLE), duration),
    Flag("announce-rate", 0.0,
         "at most this many announcements per second over all addresses (an IPv4 one is "
         "two ARP frames); 0: no limit. Switches with Dynamic ARP Inspection shut a port "
         "above 15 ARP packets/s by default: set 7 there", (AGENT, SIMPLE), float),
    Flag("addr-lifetime", 30.0,
         "valid lifetime the agent gives its addresses and keeps refreshing; the kernel "
         "drops them this long after the agent dies; 0 means forever",
         (AGENT, SIMPLE), duration),
    Flag("probe", True,
         "before an address is first placed, probe the segment for it (ARP probe, IPv6 "
         "duplicate address detection) and refuse it if another host answers", (AGENT,),
         boolean),
    Flag("port-guard", True,
         "drop traffic to the addresses held for Services except on the Services' ports "
         "(and ICMP echo), so host services listening on all addresses do not answer on them",
         (AGENT, SIMPLE), boolean),
    Flag("api-loss", "keep",
         "when the agent cannot renew its Lease for --lease-duration: keep holding its "
         "addresses (MetalLB-like) or release them (the scheduler may have moved them)",
         (AGENT,), str, ("keep", "release")),
    Flag("mask", 32, "prefix length for external IPs (IPv6 uses 128 unless --mask6)",
         (SCHEDULER, SIMPLE), int),
    Flag("mask6", 128, "prefix length for IPv6 external IPs", (SCHEDULER, SIMPLE), int),
    Flag("nodefilter", "fair",
         "placement: fair (fewest claims first) or first-alive (all IPs on the first live node)",
         (SCHEDULER,), str, ("fair", "first-alive")),
    Flag("monitor", 4.0, "how often the scheduler checks node liveness", (SCHEDULER,), duration),
    Flag("leader-elect", False, "run leader election; only the leader writes", (SCHEDULER,),
         boolean),
    Flag("leader-elect-lease-duration", 15.0, "leader Lease duration", (SCHEDULER,), duration),
    Flag("leader-elect-renew-deadline", 10.0,
         "a leader that cannot renew within this long stops writing", (SCHEDULER,), duration),
    Flag("leader-elect-retry-period", 2.0, "how often candidates try to acquire or renew",
         (SCHEDULER,), duration),
    Flag("leader-elect-resource-name", "externalip-scheduler", "name of the leader Lease",
         (SCHEDULER,)),
    Flag("load-balancer-class", "externalip.io/lb",
         "spec.loadBalancerClass this installation serves", (SCHEDULER, SIMPLE, STATUS)),
    Flag("default-class", True,
         "also serve LoadBalancer Services that name no loadBalancerClass",
         (SCHEDULER, SIMPLE, STATUS), boolean),
    Flag("lb-ingress", False,
         "simple mode: also hold LoadBalancer ingress IPs, not only spec.externalIPs", (SIMPLE,),
         boolean),
    Flag("metrics-addr", ":9440", "listen address for /metrics (and /healthz and /readyz "
         "unless --health-addr is set): host:port, :port or [v6]:port; empty disables",
         ALL, listen_address),
    Flag("health-addr", "", "listen address for /healthz and /readyz only (e.g. the node's "
         "address while --metrics-addr is 127.0.0.1:9440); empty: on --metrics-addr",
         ALL, listen_address),
    Flag("metrics-auth", False, "/metrics requires a bearer token whose user may get the "
         "non-resource URL /metrics (TokenReview + SubjectAccessReview)", ALL, boolean),
    Flag("log-format", "json", "log format: json or console", ALL, str, ("json", "console")),
    Flag("log-level", "info", "log level", ALL, str, ("debug", "info", "warning", "error")),
)


def _env_default(flag: Flag) -> Any:
    raw = os.environ.get(flag.env)
    if raw is None:
        return flag.default
    try:
        return flag.kind(raw)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise SystemExit(f"externalip: environment variable {flag.env}: {exc}") from exc


def add_flags(parser: argparse.ArgumentParser, program: str) -> None:
    for flag in FLAGS:
        if program not in flag.programs:
            continue
        default = _env_default(flag)
        shown = flag.default if flag.kind is not duration else f"{flag.default:g}s"
        extra: dict[str, Any] = {"nargs": "?", "const": True} if flag.kind is boolean else {}
        parser.add_argument(
            f"--{flag.name}",
            dest=flag.name.replace("-", "_"),
            type=flag.kind,
            default=default,
            choices=flag.choices,
            metavar=flag.name.upper().replace("-", "_") if flag.choices is None else None,
            help=f"{flag.help} (default {shown!s}; env {flag.env})",
            **extra,
        )
