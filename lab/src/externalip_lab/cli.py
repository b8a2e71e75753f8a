"""`externalip lab up|down|status|demo`: the whole system on this machine."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from types import FrameType

import yaml

from externalip import log
from externalip_lab.lab import Lab, destroy, progress, running_labs

DEMO_NAMESPACE = "demo"


def demo_service(name: str = "nginx", family: str = "IPv4") -> str:
    """The seed's examples/nginx.yaml Service: type LoadBalancer, port 80."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": DEMO_NAMESPACE},
        "spec": {"type": "LoadBalancer", "selector": {"app": "nginx"},
                 "ipFamilies": [family],
                 "ports": [{"name": "http", "port": 80, "targetPort": 80}]}})


def wait_for_ingress(lab: Lab, name: str, timeout: float = 60.0) -> str:
    assert lab.cp is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc = json.loads(lab.cp.kubectl("get", "service", name, "-n", DEMO_NAMESPACE,
                                        "-o", "json").stdout)
        ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        if ingress and ingress[0].get("ip"):
            return str(ingress[0]["ip"])
        time.sleep(0.1)
    raise TimeoutError(f"service {DEMO_NAMESPACE}/{name} got no IP within {timeout}s")


def show_service(lab: Lab) -> tuple[str, str]:
    """Create the demo Service and show the client reaching it; (ip, node)."""
    assert lab.cp is not None
    lab.cp.ensure_namespace(DEMO_NAMESPACE)
    created = time.monotonic()
    lab.cp.apply(demo_service())
    ip = wait_for_ingress(lab, "nginx")
    allocated = time.monotonic() - created
    progress(f"service {DEMO_NAMESPACE}/nginx got {ip} in {allocated:.2f}s")
    node = lab.wait_reachable(ip)
    progress(f"client reached http://{ip}/ served by {node} "
             f"{time.monotonic() - created:.2f}s after the Service was created")
    print(lab.cp.kubectl("get", "ipclaims").stdout, file=sys.stderr)
    return ip, node


def failover(lab: Lab, ip: str, node: str) -> None:
    killed = time.monotonic()
    lab.kill_node(node)
    progress(f"killed {node} (link down, agent gone)")
    other = lab.wait_reachable(ip, within=120, not_from=node)
    progress(f"client reached {ip} on {other} {time.monotonic() - killed:.2f}s after "
             f"{node} died")


def _hold(lab: Lab) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    assert lab.cp is not None
    progress(f"lab running; kubeconfig: {lab.cp.kubeconfig}; Ctrl-C (or "
             f"`externalip lab down`) removes everything")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `externalip lab` to the runtime's command line (an entry point of the
    `externalip.commands` group: the runtime package knows nothing of the lab)."""
    lab = sub.add_parser("lab", help="the whole system on this machine, in network namespaces",
                         description="Runs a real control plane, nodes in network namespaces "
                         "and a client, all on this machine (root needed).")
    lab.set_defaults(run=main)
    lab.add_argument("action", choices=["up", "down", "status", "demo"], nargs="?", default="up")
    lab.add_argument("--nodes", type=int, default=3, help="number of node namespaces (default 3)")
    lab.add_argument("--mode", choices=["claims", "simple"], default="claims",
                     help="operating mode to run in the lab (default claims)")
    lab.add_argument("--no-hold", action="store_true",
                     help="up: remove the lab again once the Service is reachable")


def main(opts: argparse.Namespace) -> int:
    log.setup("console", "warning")
    if opts.action == "status":
        labs = running_labs()
        for state in labs:
            print(f"{state['prefix']}: mode {state['mode']}, nodes {', '.join(state['nodes'])}, "  # type: ignore[arg-type]
                  f"kubeconfig {state['kubeconfig']}")
        if not labs:
            print("no lab running")
        return 0
    if opts.action == "down":
        for state in running_labs():
            destroy(state)
            print(f"removed lab {state['prefix']}")
        return 0
    lab = Lab(nodes=opts.nodes, mode=opts.mode)
    try:
        lab.start()
        if opts.mode == "claims":
            ip, node = show_service(lab)
            if opts.action == "demo":
                failover(lab, ip, node)
        if opts.action == "up" and not opts.no_hold:
            _hold(lab)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        progress(f"failed: {exc}")
        return 1
    finally:
        progress("removing the lab")
        lab.stop()
