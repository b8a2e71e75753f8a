"""The whole system on one machine: a real control plane, N nodes in network
namespaces on one bridge, each with kube-proxy and pods behind it, a client,
and the programs running under the shipped service accounts, exactly as a
cluster would run them.

Every name carries the lab's prefix; `stop()` removes everything, and a
state file lets `externalip lab down` clean up a lab whose owner was killed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from externalip import log
from externalip_lab import faults, kubeproxy, podman, pods
from externalip_lab import nodes as k8s_nodes
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.client import ClientView
from externalip_lab.control import ControlServer
from externalip_lab.controlplane import ControlPlane
from externalip_lab.controlplane.binaries import REPO_ROOT
from externalip_lab.controlplane.server import free_port
from externalip_lab.endpoints import EndpointSliceWriter
from externalip_lab.imagepods import ImagePods
from externalip_lab.labapi import LabApi
from externalip_lab.labstate import STATE_ROOT
from externalip_lab.processes import StartStop, stop_process
from externalip_lab.topology import POOL4, POOL6, SUBNET4, SUBNET6, Topology, node_addresses
from externalip_lab.workloads import LabPod, Workloads

_log = log.get(__name__)

NAMESPACE = "externalip"
PROXY_PORT = 6443
POOL_NAME, POOL6_NAME = "lab-pool", "lab-pool-v6"
DEPLOY = REPO_ROOT / "deploy"
DEMO_APPS = (("demo", "nginx"),)


def new_prefix() -> str:
    """A unique name prefix for one lab's namespaces and files."""
    return "eipl" + secrets.token_hex(2)


def progress(step: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: IO[bytes]


@dataclass
class Lab(StartStop, ClientView):
    nodes: int = 3
    mode: str = "claims"  # "simple", or "none" (bare lab, e.g. to run MetalLB on it)
    prefix: str = field(default_factory=new_prefix)
    schedulers: int = 2
    agent_args: tuple[str, ...] = ()
    scheduler_args: tuple[str, ...] = ()
    proxy_mode: str = "nftables"
    kube_proxy_args: tuple[str, ...] = ()  # e.g. ("--iptables-min-sync-period=0",)
    apps: tuple[tuple[str, str], ...] = DEMO_APPS  # (namespace, app): a pod per node each
    schedulers_in_nodes: bool = False  # as pods, so a node's death can take the leader
    # the programs as the chart deploys them, from this image (imagepods.py);
    # image_values: the chart's --set values (agent_args etc. do not apply)
    from_image: str = ""
    image_values: tuple[str, ...] = ()
    namespace: str = NAMESPACE
    proxy_port: int = PROXY_PORT

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= pods.MAX_NODES:
            raise ValueError(f"a lab has 1 to {pods.MAX_NODES} nodes, not {self.nodes}")
        self.dir = STATE_ROOT / self.prefix
        self.topology = Topology(self.prefix, self.nodes)
        self.cp: ControlPlane | None = None
        self.procs: dict[str, Proc] = {}
        self.proxies: dict[str, ApiProxy] = {}
        self.node_kubeconfig: Path | None = None
        self.workloads: Workloads | None = None
        self.endpoints: EndpointSliceWriter | None = None
        self.control: ControlServer | None = None
        self.image: ImagePods | None = None
        self.ready = False

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        progress(f"starting control plane (prefix {self.prefix})")
        self.cp = ControlPlane(self.dir / "controlplane")
        self.cp.start()
        self._save_state()
        if self.from_image:
            progress(f"helm install of the chart with image {self.from_image}")
            self.image = ImagePods(self, self.from_image, self.image_values)
            self.image.install()
        else:
            progress("installing CRDs, namespace, service accounts, RBAC")
            self.cp.install_crds(DEPLOY / "crds")
            for manifest in ("namespace.yaml", "serviceaccounts.yaml"):
                self.cp.apply(DEPLOY / manifest)
            for rbac in sorted((DEPLOY / "rbac").glob("*.yaml")):
                self.cp.apply(rbac)
        kubeproxy.install_rbac(self.cp)
        self._apply_pools()
        progress(f"creating {self.nodes} node namespaces and a client on one bridge")
        self.topology.create()
        self._save_state()
        api = LabApi(self.cp)
        self.workloads = Workloads(api, self.topology, self._spawn_in_netns)
        self.endpoints = EndpointSliceWriter(api).start()
        account = {"claims": "externalip-agent", "simple": "externalip-simple"}.get(
            self.mode, "externalip-agent")
        server = f"https://127.0.0.1:{PROXY_PORT}"
        if not self.image:
            self.node_kubeconfig = self.cp.service_account_kubeconfig(NAMESPACE, account,
                                                                      server=server)
        self.kube_proxy_kubeconfig = kubeproxy.kubeconfig(self.cp, server)
        for i, node in enumerate(self.node_names, start=1):
            self._start_node(i, node)
        for namespace, app in self.apps:
            for node in self.node_names:
                self.workloads.add(namespace, app, node)
        progress(f"pods of {', '.join(f'{ns}/{app}' for ns, app in self.apps) or 'no app'}"
                 " on every node")
        if self.image:
            self.image.start()
            progress(f"pods from the image ready: {', '.join(sorted(self.image.pods))}")
        elif self.mode == "claims":
            for i in range(1, self.schedulers + 1):
                self.start_scheduler(i)
            progress(f"{self.schedulers} schedulers running with leader election")
        self.control = ControlServer(self.dir / "control.sock",
                                     lambda words: faults.handle(self, words)).start()
        self.ready = True
        self._save_state()
        progress(f"lab up in {time.monotonic() - started:.1f}s")

    def _start_node(self, index: int, node: str) -> None:
        assert self.cp is not None
        k8s_nodes.create(self.cp, node, *node_addresses(index))
        pods.wire_node(self.topology.node_ns(node), index, self.nodes)
        self.heal(node)
        self.start_kube_proxy(node)
        if self.mode != "none" and not self.image:
            self.start_agent(node)
        progress(f"{node}: API proxy, kube-proxy ({self.proxy_mode}) and "
                 f"{self.mode} program running")

    def stop(self) -> None:
        if self.control is not None:
            self.control.stop()
        if self.endpoints is not None:
            self.endpoints.stop()
        if self.image is not None:
            self.image.stop()
        for name in list(self.procs):
            self._terminate(name)
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        self.topology.destroy()
        if self.cp is not None:
            self.cp.stop()
            self.cp = None
        keep = os.environ.get("EXTERNALIP_LAB_KEEP_LOGS")
        if keep:  # for post-mortems of failed tests: the logs, not the state
            target = Path(keep) / self.prefix
            target.mkdir(parents=True, exist_ok=True)
            for logfile in self.dir.glob("*.log"):
                shutil.copy(logfile, target)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- programs ----------------------------------------------------------
    def _externalip(self) -> list[str]:
        return [sys.executable, "-m", "externalip"]

    def peer_keys(self) -> Path:
        """The agents' heartbeat key, as the chart's Secret would mount it."""
        keys = self.dir / "peer-keys"
        if not (keys / "1").exists():
            keys.mkdir(parents=True, exist_ok=True)
            (keys / "1").write_text(secrets.token_hex(32))
        return keys

    def start_agent(self, node: str, *extra: str) -> None:
        """The node's program, with every flag the lab gives it, in one place."""
        if self.image:
            self.image.launch(self.image.pods[f"agent-{node}"])
            return
        assert self.node_kubeconfig is not None
        common = [f"--kubeconfig={self.node_kubeconfig}", "--iface=eth0",
                  "--metrics-addr=127.0.0.1:9440", "--log-format=console"]
        if self.mode == "claims":
            argv = [*self._externalip(), "agent", *common, f"--hostname={node}",
                    f"--namespace={NAMESPACE}", f"--peer-key-dir={self.peer_keys()}",
                    *self.agent_args, *extra]
        else:
            argv = [*self._externalip(), "simple", *common, *self.agent_args, *extra]
        self._spawn_in_node(node, f"agent-{node}", argv)

    def start_kube_proxy(self, node: str) -> None:
        assert self.cp is not None
        self._spawn_in_node(node, f"kube-proxy-{node}", [*kubeproxy.argv(
            self.cp, self.kube_proxy_kubeconfig, node, self.proxy_mode), *self.kube_proxy_args])

    def add_pod(self, namespace: str, app: str, node: str, ready: bool = True) -> LabPod:
        """Another pod labelled app=<app> on node (one per node exists for each of `apps`)."""
        assert self.workloads is not None
        pod = self.workloads.add(namespace, app, node, ready)
        self._save_state()
        return pod

    def set_pod_ready(self, name: str, ready: bool) -> LabPod:
        assert self.workloads is not None
        return self.workloads.set_ready(name, ready)

    def _spawn_in_node(self, node: str, name: str, argv: list[str]) -> None:
        self._spawn_in_netns(name, self.topology.node_ns(node), argv)

    def _spawn_in_netns(self, name: str, netns: str, argv: list[str]) -> None:
        self._spawn(name, ["ip", "netns", "exec", netns, *argv])

    def spawn_process(self, name: str, argv: list[str],
                      env: dict[str, str] | None = None) -> None:
        """Run another program under the lab's care (log, state file, stop()),
        e.g. MetalLB's speakers for side-by-side benchmarks."""
        self._spawn(name, argv, env)

    def spawn_container(self, name: str, container: str, argv: list[str]) -> None:
        """A pod's container (imagepods.py): signals go to the container."""
        logfile = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        popen = podman.ContainerPopen(container, argv, stdout=logfile, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        self.procs[name] = Proc(name, popen, logfile)
        self._save_state()

    def stop_process(self, name: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        self._terminate(name, sig, wait)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        logfile = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
        popen = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env)
        self.procs[name] = Proc(name, popen, logfile)
        self._save_state()

    def _terminate(self, name: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        stop_process(proc.popen, sig, wait)
        proc.logfile.close()
        self._save_state()

    def log_of(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_scheduler(self, index: int) -> None:
        """Scheduler `index`: in the root namespace, or (schedulers_in_nodes) in
        node `index` (wrapping), through its API proxy, as a pod would run."""
        assert self.cp is not None
        if self.image:
            self.image.launch(self.image.pods[f"scheduler-{index}"])
            return
        node = self.scheduler_node(index)
        server = f"https://127.0.0.1:{PROXY_PORT}" if node else None
        kubeconfig = self.cp.service_account_kubeconfig(NAMESPACE, "externalip-scheduler",
                                                        server=server)
        # a free port in the root namespace, where several labs would collide
        port = 9450 + index if node else free_port()
        argv = [*self._externalip(), "scheduler", f"--kubeconfig={kubeconfig}",
                f"--namespace={NAMESPACE}", "--leader-elect=true",
                f"--metrics-addr=127.0.0.1:{port}", "--log-format=console",
                *self.scheduler_args]
        if node:
            self._spawn_in_node(node, f"scheduler-{index}", argv)
        else:
            self._spawn(f"scheduler-{index}", argv)

    def scheduler_node(self, index: int) -> str | None:
        return self.node_names[(index - 1) % self.nodes] if self.schedulers_in_nodes else None

    def stop_scheduler(self, index: int) -> None:
        self._terminate(f"scheduler-{index}")

    def kill_scheduler(self, index: int) -> None:
        self._terminate(f"scheduler-{index}", signal.SIGKILL)

    # --- faults (`externalip lab fault ...` drives them through faults.py) --
    def kill_agent(self, node: str) -> None:
        self._terminate(f"agent-{node}", signal.SIGKILL)

    def stop_agent(self, node: str) -> None:
        self._terminate(f"agent-{node}", signal.SIGTERM)

    def freeze_agent(self, node: str) -> None:
        """SIGSTOP: the agent is there but runs nothing (a starved or hung process)."""
        self.procs[f"agent-{node}"].popen.send_signal(signal.SIGSTOP)

    def thaw_agent(self, node: str) -> None:
        proc = self.procs.get(f"agent-{node}")
        if proc is not None:
            proc.popen.send_signal(signal.SIGCONT)

    def kill_node(self, node: str) -> None:
        """Node death: its link goes down and every program on it dies
        (agent, kube-proxy, a scheduler placed there); its API proxy stops."""
        self.topology.link_down(node)
        self.kill_agent(node)
        self._terminate(f"kube-proxy-{node}", signal.SIGKILL)
        for index in range(1, self.schedulers + 1):
            if self.scheduler_node(index) == node:
                self.kill_scheduler(index)
        self.partition(node)

    def partition(self, node: str) -> None:
        """Cut the node from the API only; its data plane stays up."""
        proxy = self.proxies.pop(node, None)
        if proxy is not None:
            proxy.stop()

    def heal(self, node: str) -> None:
        """The node's API proxy running, without added latency."""
        assert self.cp is not None
        if node not in self.proxies:
            self.proxies[node] = ApiProxy(self.topology.node_ns(node),
                                          self.cp.apiserver_port, PROXY_PORT).start()
        self.proxies[node].latency = 0.0
        self.proxies[node].chaos = None

    def restore_node(self, node: str) -> None:
        """Undo any fault of the node: link up, API reachable and fast, programs running."""
        self.topology.link_up(node)
        self.heal(node)
        self.thaw_agent(node)
        if f"kube-proxy-{node}" not in self.procs:
            self.start_kube_proxy(node)
        if f"agent-{node}" not in self.procs and self.mode != "none":
            self.start_agent(node)
        for index in range(1, self.schedulers + 1):
            if self.scheduler_node(index) == node and f"scheduler-{index}" not in self.procs:
                self.start_scheduler(index)

    # --- Kubernetes objects ------------------------------------------------
    def node_labels(self, node: str) -> dict[str, str]:
        return k8s_nodes.labels(node)

    def _apply_pools(self) -> None:
        assert self.cp is not None
        self.cp.apply(yaml.safe_dump_all([
            {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
             "metadata": {"name": POOL_NAME},
             "spec": {"cidr": SUBNET4, "ranges": [list(POOL4)]}},
            {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
             "metadata": {"name": POOL6_NAME},
             "spec": {"cidr": SUBNET6, "ranges": [list(POOL6)]}},
        ]))

    # --- state for the commands acting on a running lab ---------------------
    def _save_state(self) -> None:
        if not self.dir.exists():
            return
        procs = list(self.procs.values())  # the image's pods start and stop in lab threads
        pids = [p.popen.pid for p in procs]
        if self.cp is not None:
            pids += self.cp.pids()
        state = {"prefix": self.prefix, "owner": os.getpid(), "pids": pids,
                 "procs": {p.name: p.popen.pid for p in procs},
                 "namespaces": [*self.topology.all_namespaces(),
                                *(self.image.namespaces() if self.image else [])],
                 "nodes": self.node_names,
                 "node_namespaces": {n: self.topology.node_ns(n) for n in self.node_names},
                 "client_namespace": self.topology.client,
                 # the node program's credentials, reaching the API through
                 # the node's own proxy (`lab exec NODE -- ...`)
                 "node_kubeconfig": str(self.node_kubeconfig or ""),
                 "mode": self.mode, "proxy_mode": self.proxy_mode, "ready": self.ready,
                 "control": str(self.dir / "control.sock"),
                 "kubectl": str(self.cp.bin.kubectl) if self.cp else "",
                 "kubeconfig": str(self.cp.kubeconfig) if self.cp else ""}
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.dir / "state.json")
