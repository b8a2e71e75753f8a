"""The API proxy's fault mode (issue 12, item 9): each scripted fault reaches
a client in the node namespace as a client would see it behind a bad proxy,
and requests without a fault get the API server's own answer."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from externalip_lab.apichaos import FAULTS, Chaos, ChaosServer
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.topology import Topology
from tests.integration.test_lab_network import topo  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.netns]

CLIENT = """
import http.client, json, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
out = []
for _ in range(int(sys.argv[3])):
    started = time.monotonic()
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx, timeout=10)
        conn.request("GET", "/api/v1/namespaces/default/services",
                     headers={"Authorization": "Bearer " + sys.argv[2]})
        resp = conn.getresponse()
        body = resp.read()
        out.append({"status": resp.status, "type": resp.getheader("Content-Type"),
                    "retry": resp.getheader("Retry-After"), "body": body.decode()[:200],
                    "took": time.monotonic() - started})
    except Exception as exc:
        out.append({"error": type(exc).__name__, "took": time.monotonic() - started})
print(json.dumps(out))
"""


def test_every_fault_as_a_client_sees_it(control_plane: ControlPlane,
                                         topo: Topology) -> None:  # noqa: F811
    ns = topo.node_ns("node1")
    certs = control_plane.certs
    assert certs is not None
    script = ["html502", "500", "429", "truncated", "reset", "latency", ""]
    chaos = Chaos(rate=0.0, script=list(script))
    # a token, as the lab's programs use: TLS ends at the proxy, so a client
    # certificate would not reach the API server
    control_plane.kubectl("create", "clusterrole", "lab-chaos", "--verb=list",
                          "--resource=services", check=False)
    control_plane.kubectl("create", "clusterrolebinding", "lab-chaos", "--clusterrole=lab-chaos",
                          "--serviceaccount=default:lab-chaos", check=False)
    control_plane.service_account_kubeconfig("default", "lab-chaos")
    token = control_plane.kubectl("create", "token", "lab-chaos", "-n", "default").stdout.strip()
    with ApiProxy(ns, control_plane.apiserver_port) as proxy:
        proxy.chaos = ChaosServer(chaos, certs.serving_cert, certs.serving_key, certs.ca_cert,
                                  control_plane.apiserver_port)
        started = time.monotonic()
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
                               str(certs.ca_cert), token, str(len(script))],
                              capture_output=True, text=True, timeout=60, check=True)
        took = time.monotonic() - started
    answers = dict(zip(script, json.loads(done.stdout), strict=True))
    assert answers["html502"]["status"] == 502 and "text/html" in answers["html502"]["type"]
    assert answers["500"]["status"] == 500
    assert answers["429"]["status"] == 429 and answers["429"]["retry"] == "1"
    truncated = answers["truncated"]
    assert truncated.get("error") == "IncompleteRead" or (
        truncated.get("status") == 200 and not _is_json(truncated["body"])), truncated
    assert answers["reset"].get("error") in ("ConnectionResetError", "RemoteDisconnected")
    assert answers["latency"]["status"] == 200 and answers["latency"]["took"] >= 2.0
    assert answers[""]["status"] == 200, answers[""]
    assert answers[""]["body"].startswith("{\"kind\":\"ServiceList\"")
    assert chaos.injected == {f: 1 for f in FAULTS} and chaos.requests == len(script)
    assert took < 30


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
