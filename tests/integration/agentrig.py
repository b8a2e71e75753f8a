"""A node namespace with a running agent (or simple-mode controller), for integration tests.

The program runs as a real process inside the node namespace (`ip netns exec`,
like a hostNetwork pod), under its shipped service account, reaching the API
server through an ApiProxy on the namespace's loopback.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from externalip.core.model import NODE_LABEL, ClaimSpec, claim_labels
from externalip.kube.resources import IpClaimResource
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.netns import NetnsSet, ip

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "externalip"


class Rig:
    def __init__(self, cp: ControlPlane, kube: AsyncClient, prefix: str, logdir: Path,
                 program: str = "agent", *, node_name: str = "") -> None:
        self.cp, self.kube, self.prefix, self.logdir = cp, kube, prefix, logdir
        self.program = program
        self.node_name = node_name or f"{prefix}-node"
        self.ns = NetnsSet(prefix)
        self.node = self.ns.namespace("node")
        self.client = self.ns.namespace("client")
        self.dev, self.cdev = f"{prefix}n", f"{prefix}c"
        self.ns.veth(self.node, self.dev, self.client, self.cdev)
        self.ns.addr(self.node, self.dev, "192.0.2.10/24")
        self.ns.addr(self.node, self.dev, "2001:db8::10/64", "nodad")
        self.ns.addr(self.client, self.cdev, "192.0.2.20/24")
        self.ns.addr(self.client, self.cdev, "2001:db8::20/64", "nodad")
        info = json.loads(ip("-j", "link", "show", "dev", self.dev, netns=self.node).stdout)
        self.mac = bytes.fromhex(info[0]["address"].replace(":", ""))
        self.proxy = ApiProxy(self.node, urlparse(cp.server).port or 443).start()
        account = {"agent": "externalip-agent", "simple": "externalip-simple"}[program]
        cp.ensure_namespace(NAMESPACE)
        cp.apply(REPO / "deploy" / "rbac" / f"{program}.yaml")
        self.kubeconfig = cp.service_account_kubeconfig(
            NAMESPACE, account, server=f"https://127.0.0.1:{self.proxy.listen_port}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.claims: list[str] = []
        self.runs = 0

    def start(self, *extra: str) -> None:
        self.runs += 1
        logfile = (self.logdir / f"{self.program}-{self.runs}.log").open("wb")
        argv = [sys.executable, "-m", "externalip", self.program,
                f"--kubeconfig={self.kubeconfig}", f"--iface={self.dev}",
                "--metrics-addr=", "--log-format=console", "--log-level=debug", *extra]
        if self.program == "agent":
            argv += [f"--hostname={self.node_name}", f"--namespace={NAMESPACE}"]
        self.proc = self.ns.popen(self.node, argv, stdout=logfile, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.proc = None
        return code

    def log(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logdir.glob(f"{self.program}-*.log")))

    def addresses(self) -> dict[str, dict[str, Any]]:
        out = ip("-j", "addr", "show", "dev", self.dev, netns=self.node).stdout
        return {a["local"]: a for a in json.loads(out)[0]["addr_info"]}

    # --- claims (written as the scheduler would, with the admin identity) ------
    async def claim(self, name: str, cidr: str, node: str | None = None, link: str = "") -> str:
        full = f"{self.prefix}-{name}"
        node = self.node_name if node is None else node
        spec: dict[str, Any] = {"cidr": cidr, "nodeName": node}
        if link:
            spec["link"] = link
        await self.kube.create(IpClaimResource(
            apiVersion="ipcontroller.ext/v1", kind="IpClaim",
            metadata=ObjectMeta(name=full, labels=claim_labels(ClaimSpec.from_dict(spec))),
            spec=spec))
        self.claims.append(full)
        return full

    async def move(self, name: str, node: str) -> None:
        old = await self.kube.get(IpClaimResource, name)
        spec = ClaimSpec.from_dict({**old["spec"], "nodeName": node})
        gone = {k: None for k in (old.metadata.labels or {}) if k != NODE_LABEL}
        await self.kube.patch(IpClaimResource, name, {
            "metadata": {"labels": {**gone, **claim_labels(spec)}}, "spec": {"nodeName": node}},
            patch_type=PatchType.MERGE)

    async def status(self, name: str) -> dict[str, Any]:
        obj = await self.kube.get(IpClaimResource, name)
        return dict(obj.get("status") or {})

    async def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for name in self.claims:
                with contextlib.suppress(ApiError):
                    await self.kube.delete(IpClaimResource, name)
        finally:
            self.proxy.stop()
            self.ns.close()
