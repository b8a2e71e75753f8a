"""loadBalancerClass, --default-class, autoAssign: false pools, and the running
scheduler's /readyz and /metrics, against a real API server."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from externalip_lab.controlplane import ControlPlane
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    FakeAgents,
    apply,
    claims,
    ingress,
    lb_service,
    pool,
    scheduler,
    wait_ingress,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError:
        return 0, ""


def test_classes_manual_pools_and_metrics(clean: ControlPlane, agents: FakeAgents,
                                          unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("auto", "192.0.2.0/24", [["192.0.2.80", "192.0.2.89"]]),
          # "a-manual" sorts first: were autoAssign ignored, plain Services would get it
          pool("a-manual", "198.51.100.0/24", [["198.51.100.80", "198.51.100.89"]],
               autoAssign=False))
    port = free_port()
    with scheduler(cp, tmp_path, f"--metrics-addr=127.0.0.1:{port}"):
        wait_for(lambda: http(port, "/readyz")[0] == 200, what="/readyz 200")
        apply(cp,
              lb_service(unique, "plain"),  # class-less: served, --default-class is on
              lb_service(unique, "ours", loadBalancerClass="externalip.io/lb"),
              lb_service(unique, "theirs", loadBalancerClass="other.io/lb"),
              lb_service(unique, "named", annotations={"externalip.io/pool": "a-manual"}))
        assert wait_ingress(cp, unique, "named") == "198.51.100.80"
        got = {wait_ingress(cp, unique, "plain"), wait_ingress(cp, unique, "ours")}
        assert got == {"192.0.2.80", "192.0.2.81"}  # the manual pool served no one else
        time.sleep(2)  # several passes (--monitor=1s): "theirs" must still be left alone
        assert ingress(cp, unique, "theirs") == []
        assert len(claims(cp)) == 3

        def metric(line: str) -> bool:
            return line in http(port, "/metrics")[1].splitlines()
        wait_for(lambda: metric('externalip_pool_addresses{pool="auto"} 10.0'), what="size")
        wait_for(lambda: metric('externalip_pool_addresses_used{pool="auto"} 2.0'), what="used")
        wait_for(lambda: metric('externalip_pool_addresses_used{pool="a-manual"} 1.0'),
                 what="manual used")
        body = http(port, "/metrics")[1]
        per_node = [line for line in body.splitlines() if line.startswith("externalip_claims{")]
        assert sum(float(line.split()[-1]) for line in per_node) == 3
        assert http(port, "/healthz")[0] == 200
