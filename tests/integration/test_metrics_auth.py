"""--metrics-auth against the real API server (issue 12, item 10): a token is
reviewed (TokenReview) and its user authorized for `get /metrics`
(SubjectAccessReview) with the agent's own account under the shipped
deploy/rbac/metrics-auth.yaml; every other case is refused."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
import yaml

from externalip.health import serve
from externalip.kube.api import Api
from externalip.kube.metricsauth import MetricsAuthorizer
from externalip_lab.controlplane import ControlPlane
from tests.conftest import REPO
from tests.unit.test_health import get

pytestmark = pytest.mark.integration

NS = "externalip"
RBAC = REPO / "deploy" / "rbac" / "metrics-auth.yaml"


@pytest.fixture
def accounts(crds: ControlPlane, unique: str) -> Iterator[dict[str, str]]:
    """Tokens of a scraper bound to externalip-metrics-reader, of an account
    without it; the shipped RBAC applied."""
    cp = crds
    cp.ensure_namespace(NS)
    cp.apply(REPO / "deploy" / "serviceaccounts.yaml")
    cp.apply(RBAC)
    tokens = {}
    for who in ("scraper", "nobody"):
        cp.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": {"name": f"{unique}-{who}", "namespace": NS}}))
        tokens[who] = cp.kubectl("create", "token", f"{unique}-{who}", "-n", NS).stdout.strip()
    cp.apply(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{unique}-scraper"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "externalip-metrics-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": f"{unique}-scraper",
                      "namespace": NS}]}))
    yield tokens
    cp.kubectl("delete", "clusterrolebinding", f"{unique}-scraper", "--ignore-not-found")
    cp.kubectl("delete", "serviceaccount", "-n", NS, f"{unique}-scraper", f"{unique}-nobody",
               "--ignore-not-found")


async def test_only_a_token_allowed_to_get_metrics_reads_them(
        crds: ControlPlane, accounts: dict[str, str], unique: str) -> None:
    api = Api.connect(str(crds.service_account_kubeconfig(NS, "externalip-agent")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = await serve(f"127.0.0.1:{port}", lambda: True, authorize=MetricsAuthorizer(api))
    try:
        assert await get("127.0.0.1", port, "/metrics", accounts["scraper"]) == "200 OK"
        assert await get("127.0.0.1", port, "/metrics", accounts["nobody"]) == "403 Forbidden"
        assert await get("127.0.0.1", port, "/metrics", "not-a-token") == "403 Forbidden"
        assert await get("127.0.0.1", port, "/metrics") == "401 Unauthorized"
        # the binding goes: denied once the cached answer is too old
        crds.kubectl("delete", "clusterrolebinding", f"{unique}-scraper")
        fresh = MetricsAuthorizer(api)
        for _ in range(50):  # the authorizer's RBAC cache catches up within moments
            if not await fresh(accounts["scraper"]):
                break
            fresh = MetricsAuthorizer(api)
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("still allowed after its binding was deleted")
    finally:
        for server in servers:
            server.close()
        await api.close()


async def test_without_the_delegation_binding_every_token_is_refused(
        crds: ControlPlane, accounts: dict[str, str], unique: str) -> None:
    """Our account may not review tokens: /metrics stays closed (403), never open."""
    api = Api.connect(str(crds.service_account_kubeconfig(NS, f"{unique}-nobody")))
    try:
        assert not await MetricsAuthorizer(api)(accounts["scraper"])
    finally:
        await api.close()
