"""The `externalip` command: one entry point, a subcommand per program.

Other distributions add subcommands through the `externalip.commands` entry
point group (the lab does: `externalip lab`); each entry point is a function
that adds its parser to the subparsers and sets `run` on it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from externalip import __version__
from externalip.settings import AGENT, DRAIN, SCHEDULER, SIMPLE, STATUS, add_flags, duration

# subcommand -> (aliases, module under externalip.programs, one-line help)
PROGRAMS: dict[str, tuple[tuple[str, ...], str, str]] = {
    AGENT: (("claimcontroller",), "agent",
            "claims mode node agent: holds the IpClaims assigned to this node"),
    SCHEDULER: (("s",), "scheduler",
                "claims mode scheduler: claims, IP pools, placement, failover"),
    SIMPLE: (("naivecontroller", "n"), "simple",
             "simple mode: holds every Service external IP on one interface"),
}


def _program(module: str) -> Callable[[argparse.Namespace], int]:
    def run(opts: argparse.Namespace) -> int:
        code: int = importlib.import_module(f"externalip.programs.{module}").main(opts)
        return code
    return run


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
        p.set_defaults(program=module, run=_program(module))
    status = sub.add_parser("status", help="pools, claims, nodes and waiting Services")
    status.set_defaults(run=_program("status"))
    add_flags(status, STATUS)
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    importlib.import_module("externalip.programs.migrate").add_parser(sub)
    for name, help_text in (("drain", "move a node's addresses away, make-before-break "
                                      "(labels the Node externalip.io/drain=true)"),
                            ("undrain", "let a drained node hold addresses again "
                                        "(nothing moves back)")):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(run=_program("drain"))
        add_flags(cmd, DRAIN)
        cmd.add_argument("node", metavar="NODE", help="name of the Node")
        if name == "drain":
            cmd.add_argument("--wait", action="store_true",
                             help="return once the node holds no address")
            cmd.add_argument("--timeout", type=duration, default=300.0,
                             help="how long --wait waits (default 300s)")
    for plugin in entry_points(group="externalip.commands"):
        plugin.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    code: int = opts.run(opts)
    return code


if __name__ == "__main__":
    sys.exit(main())
