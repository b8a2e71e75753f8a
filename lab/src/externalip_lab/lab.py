"""The whole system on one machine: a real control plane, N nodes in network
namespaces on one bridge, a client, the programs running under the shipped
service accounts, exactly as a cluster would run them.

Every name carries the lab's prefix; `stop()` removes everything, and a
state file lets `externalip lab down` clean up a lab whose owner was killed.
"""

from __future__ import annotations

import contextlib
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
from externalip_lab import nodes as k8s_nodes
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.controlplane.binaries import REPO_ROOT
from externalip_lab.controlplane.server import free_port
from externalip_lab.processes import StartStop, stop_process
from externalip_lab.topology import POOL4, POOL6, SUBNET4, SUBNET6, Topology, ip, node_addresses

_log = log.get(__name__)

STATE_ROOT = Path("/run/externalip-lab")
NAMESPACE = "externalip"
PROXY_PORT = 6443
POOL_NAME, POOL6_NAME = "lab-pool", "lab-pool-v6"
DEPLOY = REPO_ROOT / "deploy"


def progress(step: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: IO[bytes]


@dataclass
class Lab(StartStop):
    nodes: int = 3
    mode: str = "claims"  # "simple", or "none" (bare lab, e.g. to run MetalLB on it)
    prefix: str = field(default_factory=lambda: "eipl" + secrets.token_hex(2))
    schedulers: int = 2
    agent_args: tuple[str, ...] = ()
    scheduler_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.dir = STATE_ROOT / self.prefix
        self.topology = Topology(self.prefix, self.nodes)
        self.cp: ControlPlane | None = None
        self.procs: dict[str, Proc] = {}
        self.proxies: dict[str, ApiProxy] = {}
        self.node_kubeconfig: Path | None = None

    @property
    def node_names(self) -> list[str]:
        return self.topology.node_names()

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        progress(f"starting control plane (prefix {self.prefix})")
        self.cp = ControlPlane(self.dir / "controlplane")
        self.cp.start()
        self._save_state()
        progress("installing CRDs, namespace, service accounts, RBAC")
        self.cp.install_crds(DEPLOY / "crds")
        for manifest in ("namespace.yaml", "serviceaccounts.yaml"):
            self.cp.apply(DEPLOY / manifest)
        for rbac in sorted((DEPLOY / "rbac").glob("*.yaml")):
            self.cp.apply(rbac)
        self._apply_pools()
        progress(f"creating {self.nodes} node namespaces and a client on one bridge")
        self.topology.create()
        self._save_state()
        account = {"claims": "externalip-agent", "simple": "externalip-simple"}.get(
            self.mode, "externalip-agent")
        self.node_kubeconfig = self.cp.service_account_kubeconfig(
            NAMESPACE, account, server=f"https://127.0.0.1:{PROXY_PORT}")
        for i, node in enumerate(self.node_names, start=1):
            k8s_nodes.create(self.cp, node, node_addresses(i)[0])
            self.proxies[node] = ApiProxy(self.topology.node_ns(node),
                                          self.cp.apiserver_port, PROXY_PORT).start()
            self._spawn_in_node(node, f"backend-{node}",
                                [sys.executable, "-m", "externalip_lab.backend", node])
            if self.mode != "none":
                self.start_agent(node)
            progress(f"{node}: API proxy, backend and {self.mode} program running")
        if self.mode == "claims":
            for i in range(1, self.schedulers + 1):
                self.start_scheduler(i)
            progress(f"{self.schedulers} schedulers running with leader election")
        self._save_state()
        progress(f"lab up in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
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

    def _spawn_in_node(self, node: str, name: str, argv: list[str]) -> None:
        self._spawn(name, ["ip", "netns", "exec", self.topology.node_ns(node), *argv])

    def spawn_process(self, name: str, argv: list[str],
                      env: dict[str, str] | None = None) -> None:
        """Run another program under the lab's care (log, state file, stop()),
        e.g. MetalLB's speakers for side-by-side benchmarks."""
        self._spawn(name, argv, env)

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        self._terminate(name, sig)

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

    # --- faults ------------------------------------------------------------
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
        """Node death: its link goes down; its processes are gone too."""
        self.topology.link_down(node)
        self.kill_agent(node)
        self.partition(node)

    def partition(self, node: str) -> None:
        """Cut the node from the API only; its data plane stays up."""
        proxy = self.proxies.pop(node, None)
        if proxy is not None:
            proxy.stop()

    def heal(self, node: str) -> None:
        assert self.cp is not None
        if node not in self.proxies:
            self.proxies[node] = ApiProxy(self.topology.node_ns(node),
                                          self.cp.apiserver_port, PROXY_PORT).start()

    def restore_node(self, node: str) -> None:
        """Undo kill_node/partition/kill_agent: link up, API reachable, agent running."""
        self.topology.link_up(node)
        self.heal(node)
        self.thaw_agent(node)
        if f"agent-{node}" not in self.procs and self.mode != "none":
            self.start_agent(node)

    def holders(self, address: str) -> list[str]:
        """Nodes whose eth0 or lo carries the address right now."""
        found = []
        for node in self.node_names:
            out = ip("-n", self.topology.node_ns(node), "-o", "addr", "show").stdout
            if any(f" {address}/" in line for line in out.splitlines()):
                found.append(node)
        return found

    def start_scheduler(self, index: int) -> None:
        assert self.cp is not None
        kubeconfig = self.cp.service_account_kubeconfig(NAMESPACE, "externalip-scheduler")
        self._spawn(f"scheduler-{index}", [
            *self._externalip(), "scheduler", f"--kubeconfig={kubeconfig}",
            f"--namespace={NAMESPACE}", "--leader-elect=true",
            # a free port: schedulers run in the root namespace, where several
            # labs on one machine would collide on a fixed one
            f"--metrics-addr=127.0.0.1:{free_port()}", "--log-format=console",
            *self.scheduler_args])

    def stop_scheduler(self, index: int) -> None:
        self._terminate(f"scheduler-{index}")

    def kill_scheduler(self, index: int) -> None:
        self._terminate(f"scheduler-{index}", signal.SIGKILL)

    def kill_leader(self) -> int:
        """SIGKILL the scheduler replica holding the leader Lease; its index."""
        assert self.cp is not None
        lease = json.loads(self.cp.kubectl("get", "lease", "externalip-scheduler", "-n",
                                           NAMESPACE, "-o", "json").stdout)
        pid = int(str(lease["spec"].get("holderIdentity", "")).rsplit("-", 1)[-1] or 0)
        for name, proc in list(self.procs.items()):
            if name.startswith("scheduler-") and proc.popen.pid == pid:
                self.kill_scheduler(int(name.split("-")[1]))
                return int(name.split("-")[1])
        raise RuntimeError(f"no scheduler of this lab holds the leader Lease (pid {pid})")

    # --- the client's view -------------------------------------------------
    def client_get(self, ip: str, timeout: float = 1.0) -> str | None:
        """GET http://ip/ from the client namespace; the serving node's name or None."""
        host = f"[{ip}]" if ":" in ip else ip
        result = subprocess.run(
            ["ip", "netns", "exec", self.topology.client, "curl", "-s", "-g",
             "--max-time", str(timeout), f"http://{host}/"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return None
        return result.stdout.strip() or None

    def wait_reachable(self, ip: str, within: float = 60.0,
                       not_from: str | None = None) -> str:
        """Poll from the client until ip answers (from a node other than not_from)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            node = self.client_get(ip, timeout=0.5)
            if node and node != not_from:
                return node
            time.sleep(0.05)
        raise TimeoutError(f"{ip} not reachable from the client within {within}s "
                           f"(held now by {self.holders(ip) or 'no node'})")

    # --- Kubernetes objects ------------------------------------------------
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

    # --- state for `lab down` ------------------------------------------------
    def _save_state(self) -> None:
        if not self.dir.exists():
            return
        pids = [p.popen.pid for p in self.procs.values()]
        if self.cp is not None:
            pids += self.cp.pids()
        state = {"prefix": self.prefix, "owner": os.getpid(), "pids": pids,
                 "namespaces": self.topology.all_namespaces(), "nodes": self.node_names,
                 "mode": self.mode,
                 "kubeconfig": str(self.cp.kubeconfig) if self.cp else ""}
        (self.dir / "state.json").write_text(json.dumps(state, indent=1))


def running_labs() -> list[dict[str, object]]:
    labs = []
    for state in sorted(STATE_ROOT.glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError):
            labs.append(json.loads(state.read_text()))
    return labs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def destroy(state: dict[str, object]) -> None:
    """Remove a lab from its state file: its processes (by PID), namespaces, files."""
    owner = int(str(state.get("owner", 0)))
    if owner and owner != os.getpid() and _alive(owner):
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGTERM)  # let it clean up after itself first
        deadline = time.monotonic() + 20
        while _alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in state.get("pids", []):  # type: ignore[attr-defined]
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    for netns in state.get("namespaces", []):  # type: ignore[attr-defined]
        ip("netns", "del", str(netns), check=False)
    shutil.rmtree(STATE_ROOT / str(state["prefix"]), ignore_errors=True)
