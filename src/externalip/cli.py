"""The `externalip` command: one entry point, a subcommand per program."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from externalip import __version__
from externalip.settings import AGENT, SCHEDULER, SIMPLE, add_flags

# subcommand -> (aliases, module under externalip.programs, one-line help)
PROGRAMS: dict[str, tuple[tuple[str, ...], str, str]] = {
    AGENT: (("claimcontroller",), "agent",
            "claims mode node agent: holds the IpClaims assigned to this node"),
    SCHEDULER: (("s",), "scheduler",
                "claims mode scheduler: claims, IP pools, placement, failover"),
    SIMPLE: (("naivecontroller", "n"), "simple",
             "simple mode: holds every Service external IP on one interface"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="externalip",
        description="External IPs and LoadBalancer IPs for bare-metal Kubernetes. "
        "Every flag can also be set from the environment variable shown in its help.",
    )
    parser.add_argument("--version", action="version", version=f"externalip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (aliases, module, help_text) in PROGRAMS.items():
        p = sub.add_parser(name, aliases=list(aliases), help=help_text, description=help_text)
        add_flags(p, name)
        p.set_defaults(program=module)
    lab = sub.add_parser("lab", help="the whole system on this machine, in network namespaces",
                         description="Runs a real control plane, nodes in network namespaces "
                         "and a client, all on this machine (root needed).")
    lab.set_defaults(program="lab")
    lab.add_argument("action", choices=["up", "down", "status", "demo"], nargs="?", default="up")
    lab.add_argument("--nodes", type=int, default=3, help="number of node namespaces (default 3)")
    lab.add_argument("--mode", choices=["claims", "simple"], default="claims",
                     help="operating mode to run in the lab (default claims)")
    lab.add_argument("--no-hold", action="store_true",
                     help="up: remove the lab again once the Service is reachable")
    status = sub.add_parser("status", help="pools, claims, nodes and waiting Services")
    status.set_defaults(program="status")
    status.add_argument("--kubeconfig", default="", help="kubeconfig file")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    try:
        module = importlib.import_module(f"externalip.programs.{opts.program}")
    except ModuleNotFoundError as exc:
        if exc.name != f"externalip.programs.{opts.program}":
            raise
        print(f"externalip {opts.command}: not implemented yet", file=sys.stderr)
        return 2
    code: int = module.main(opts)
    return code


if __name__ == "__main__":
    sys.exit(main())
