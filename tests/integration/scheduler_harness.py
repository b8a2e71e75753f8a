"""Running the scheduler as a real process, with fake agents (Leases the test renews)."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from externalip_lab.controlplane import ControlPlane
from tests.conftest import REPO
from tests.helpers import wait_for

NS = "externalip"


def install(cp: ControlPlane) -> Path:
    cp.ensure_namespace(NS)
    cp.apply(REPO / "deploy" / "serviceaccounts.yaml")
    cp.apply(REPO / "deploy" / "rbac" / "scheduler.yaml")
    return cp.service_account_kubeconfig(NS, "externalip-scheduler")


@contextmanager
def scheduler(cp: ControlPlane, logdir: Path, *args: str,
              name: str = "scheduler") -> Iterator[subprocess.Popen[bytes]]:
    kubeconfig = install(cp)
    log = open(logdir / f"{name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "externalip", "scheduler", f"--kubeconfig={kubeconfig}",
         f"--namespace={NS}", "--metrics-addr=", "--log-format=console", "--monitor=1s",
         *args], stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAgents:
    """Nodes (Ready) and agent Leases renewed every second until stopped per node."""

    def __init__(self, cp: ControlPlane, nodes: list[str], labels: dict[str, str] | None = None,
                 duration: int = 3) -> None:
        self.cp, self.nodes, self.duration = cp, nodes, duration
        self.alive = set(nodes)
        self._stop = threading.Event()
        cp.ensure_namespace(NS)
        for node in nodes:
            cp.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Node",
                                     "metadata": {"name": node, "labels": labels or {}}}))
            cp.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p",
                       json.dumps({"status": {"conditions": [
                           {"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "test", "lastHeartbeatTime": now(),
                            "lastTransitionTime": now()}]}}))
        self._renew_all()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _renew_all(self) -> None:
        docs = [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": n, "namespace": NS},
                 "spec": {"holderIdentity": n, "leaseDurationSeconds": self.duration,
                          "renewTime": now()}} for n in sorted(self.alive)]
        if docs:
            result = self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                                     input=yaml.safe_dump_all(docs), check=False)
            if result.returncode != 0:
                print(f"lease renewal failed: {result.stderr}", file=sys.stderr)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._renew_all()

    def kill(self, node: str) -> None:
        self.alive.discard(node)

    def revive(self, node: str) -> None:
        self.alive.add(node)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.cp.kubectl("delete", "lease", "-n", NS, *self.nodes, "--ignore-not-found",
                        check=False)
        self.cp.kubectl("delete", "node", *self.nodes, "--ignore-not-found", check=False)


def apply(cp: ControlPlane, *docs: dict[str, object]) -> None:
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def get(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def claims(cp: ControlPlane) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in get(cp, "ipclaims")["items"]}


def ingress(cp: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    svc = get(cp, "service", name, "-n", ns)
    return list(svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [])


def wait_ingress(cp: ControlPlane, ns: str, name: str, within: float = 30) -> str:
    wait_for(lambda: bool(ingress(cp, ns, name)), within=within, what=f"{ns}/{name} ingress")
    return str(ingress(cp, ns, name)[0]["ip"])


def lb_service(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", None)
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                     **spec}}


def pool(name: str, cidr: str, ranges: list[list[str]] | None = None,
         **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"cidr": cidr, **extra}
    if ranges:
        spec["ranges"] = ranges
    return {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
            "metadata": {"name": name}, "spec": spec}


def events(cp: ControlPlane, ns: str, name: str) -> list[str]:
    items = get(cp, "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return [f"{e['reason']}: {e['message']}" for e in items["items"]]


def api_requests(cp: ControlPlane) -> Counter[tuple[str, str]]:
    """The API server's own count of the requests it served (apiserver_request_total),
    by verb and resource[/subresource]: take two and subtract."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in cp.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels.get("resource", "") + (
                "/" + labels["subresource"] if labels.get("subresource") else "")
            totals[(labels.get("verb", ""), resource)] += int(float(line.rsplit(" ", 1)[1]))
    return totals
