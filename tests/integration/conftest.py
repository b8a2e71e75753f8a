"""Fixtures for tests that run the scheduler against the shared control plane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from externalip_lab.controlplane import ControlPlane
from tests.integration.scheduler_harness import FakeAgents


@pytest.fixture
def clean(crds: ControlPlane, unique: str) -> Iterator[ControlPlane]:
    """No pools, claims or IpNodes left by earlier tests (they are cluster-scoped:
    an agent's IpNode lists its node's own addresses, which are never
    allocated), and a namespace of this test's own; everything it made is
    removed afterwards."""
    for kind in ("ipclaimpools", "ipclaims", "ipnodes"):
        crds.kubectl("delete", kind, "--all", "--wait=false")
    crds.ensure_namespace(unique)
    yield crds
    crds.kubectl("delete", "services", "--all", "-n", unique, "--wait=false")
    for kind in ("ipclaims", "ipclaimpools", "ipnodes"):
        crds.kubectl("delete", kind, "--all", "--wait=false")


@pytest.fixture
def agents(clean: ControlPlane) -> Iterator[FakeAgents]:
    """Three Ready nodes whose agents' Leases the test renews (kill/revive per node)."""
    fake = FakeAgents(clean, ["node-a", "node-b", "node-c"])
    yield fake
    fake.stop()
