"""`externalip lab up|down|status|demo|env|fault|pod`: the whole system on this
machine, and the verbs for a lab that is up (another process holds it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from externalip import log
from externalip_lab import control, kubeproxy, podman
from externalip_lab.faults import FAULTS
from externalip_lab.lab import Lab, new_prefix, progress
from externalip_lab.labstate import STATE_ROOT, NoSuchLabError, destroy, running_labs, select

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
    answer = lab.wait_answer(ip)
    progress(f"client reached http://{ip}/ through {answer.via}, answered by pod "
             f"{answer.pod} on {answer.node} (it saw the client as {answer.client}) "
             f"{time.monotonic() - created:.2f}s after the Service was created")
    node = answer.via
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
    progress(f"lab {lab.prefix} running; `eval $(externalip lab env)` sets KUBECONFIG and "
             f"PATH for its kubectl; Ctrl-C (or `externalip lab down`) removes everything")
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
                         "with kube-proxy and pods, and a client, all on this machine "
                         "(root needed).", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="verbs for a lab that is up:\n"
                         f"  fault {{{','.join(FAULTS)}}} NODE\n"
                         "  pod {ready,unready} POD\n"
                         "  exec NODE -- COMMAND...  (in the node's namespace, with its agent's\n"
                         "                            service-account kubeconfig and kubectl)")
    lab.set_defaults(run=main)
    lab.add_argument("action", nargs="?", default="up",
                     choices=["up", "down", "status", "demo", "env", "fault", "pod", "exec"])
    lab.add_argument("words", nargs="*", help="fault: VERB NODE; pod: ready|unready POD; "
                     "exec: NODE -- COMMAND...")
    lab.add_argument("--nodes", type=int, default=3, help="number of node namespaces (default 3)")
    lab.add_argument("--mode", choices=["claims", "simple"], default="claims",
                     help="operating mode to run in the lab (default claims)")
    lab.add_argument("--proxy-mode", choices=kubeproxy.MODES, default="nftables",
                     help="kube-proxy's mode on every node (default nftables)")
    lab.add_argument("--schedulers-in-nodes", action="store_true",
                     help="run the schedulers inside node namespaces, as pods")
    lab.add_argument("--from-image", nargs="?", const="build", default="", metavar="IMAGE",
                     help="run the programs from the container image, as `helm install` of "
                     "the chart deploys them (default: the image `make image` builds)")
    lab.add_argument("--prefix", help="the lab to act on (default: the only one running); "
                     "up: the new lab's prefix")
    lab.add_argument("--all", action="store_true", help="down: every lab on this machine")
    lab.add_argument("--detach", action="store_true",
                     help="up: return once the lab is up and leave it running")
    lab.add_argument("--no-hold", action="store_true",
                     help="up: remove the lab again once the Service is reachable")


def _env(state: dict[str, object]) -> str:
    kubectl_dir = os.path.dirname(str(state["kubectl"]))
    return (f"export KUBECONFIG={state['kubeconfig']}\n"
            f"export PATH={kubectl_dir}:$PATH\n"
            f"export EXTERNALIP_LAB_PREFIX={state['prefix']}")


def _detach(opts: argparse.Namespace, prefix: str) -> int:
    """Start `lab up` in its own session and return once its state says ready."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    logpath = STATE_ROOT / f"{prefix}.log"
    argv = [sys.executable, "-m", "externalip", "lab", "up", f"--prefix={prefix}",
            f"--nodes={opts.nodes}", f"--mode={opts.mode}", f"--proxy-mode={opts.proxy_mode}",
            *(["--schedulers-in-nodes"] if opts.schedulers_in_nodes else []),
            *([f"--from-image={opts.from_image}"] if opts.from_image else [])]
    with open(logpath, "ab") as logfile:
        child = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    while child.poll() is None:
        state = next((s for s in running_labs() if s["prefix"] == prefix), None)
        if state and state.get("ready"):
            progress(f"lab {prefix} up (pid {child.pid}, log {logpath})")
            print(_env(state))
            return 0
        time.sleep(0.5)
    progress(f"lab {prefix} failed to start; its log ends:\n"
             + "\n".join(logpath.read_text(errors="replace").splitlines()[-15:]))
    return 1


def _status(state: dict[str, Any]) -> str:
    """One lab, for people and for scripts (`key: value` lines, namespaces by role)."""
    lines = [f"{state['prefix']}: {'up' if state.get('ready') else 'starting'}, "
             f"mode {state['mode']}, kube-proxy {state.get('proxy_mode', '?')}",
             f"  kubeconfig: {state['kubeconfig']}",
             f"  kubectl: {state.get('kubectl', '')}"]
    if state.get("node_kubeconfig"):
        lines.append(f"  node kubeconfig: {state['node_kubeconfig']}")
    nodes = state.get("node_namespaces") or {}
    lines += [f"  namespace {node}: {netns}" for node, netns in nodes.items()]
    lines += [f"  namespace {netns.removeprefix(state['prefix'] + '-')}: {netns}"
              for netns in state.get("namespaces", []) if netns not in nodes.values()]
    return "\n".join(lines)


def _exec(state: dict[str, Any], words: list[str]) -> int:
    """`lab exec NODE -- COMMAND...`: run COMMAND as a program of that node
    runs (its network namespace, its agent's credentials through its API
    proxy); the exit status is COMMAND's."""
    nodes: dict[str, str] = state.get("node_namespaces") or {}
    if len(words) < 2 or words[0] not in nodes:
        raise NoSuchLabError(f"usage: externalip lab exec NODE -- COMMAND..., NODE one of "
                             f"{', '.join(nodes) or 'none (the lab is still starting)'}")
    if not state.get("node_kubeconfig"):  # --from-image: the pods hold their own tokens
        raise NoSuchLabError("this lab runs the programs from the image: no node "
                             "credentials to run with (use its pods, docs/image.md)")
    env = {**os.environ, "KUBECONFIG": str(state["node_kubeconfig"]),
           "PATH": f"{os.path.dirname(str(state['kubectl']))}:{os.environ.get('PATH', '')}",
           "EXTERNALIP_HOSTNAME": words[0], "EXTERNALIP_LAB_PREFIX": str(state["prefix"])}
    return subprocess.run(["ip", "netns", "exec", nodes[words[0]], *words[1:]], env=env,
                          check=False).returncode


def _act_on_running(opts: argparse.Namespace) -> int:
    if opts.action == "status":
        for state in select(opts.prefix, every=not opts.prefix):
            print(_status(state))
        if not running_labs():
            print("no lab running")
        return 0
    if opts.action == "down" and not running_labs():
        print("no lab running")  # nothing to remove is not an error
        return 0
    labs = select(opts.prefix, every=opts.action == "down" and opts.all)
    if opts.action == "down":
        for state in labs:
            destroy(state)
            (STATE_ROOT / f"{state['prefix']}.log").unlink(missing_ok=True)
            print(f"removed lab {state['prefix']}")
        return 0
    if opts.action == "env":
        print(_env(labs[0]))
        return 0
    if opts.action == "exec":
        return _exec(labs[0], opts.words)
    ok, message = control.send(Path(labs[0]["control"]), [opts.action, *opts.words])
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def main(opts: argparse.Namespace) -> int:
    log.setup("console", "warning")
    if opts.action not in ("up", "demo"):
        try:
            return _act_on_running(opts)
        except (NoSuchLabError, OSError) as exc:
            print(f"externalip lab {opts.action}: {exc}", file=sys.stderr)
            return 1
    prefix = opts.prefix or new_prefix()
    if opts.action == "up" and opts.detach:
        return _detach(opts, prefix)
    image = podman.build_image() if opts.from_image == "build" else opts.from_image
    lab = Lab(nodes=opts.nodes, mode=opts.mode, prefix=prefix, proxy_mode=opts.proxy_mode,
              schedulers_in_nodes=opts.schedulers_in_nodes, from_image=image)
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
