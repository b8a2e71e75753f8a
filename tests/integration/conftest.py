"""Fixtures for tests that run the scheduler against the shared control plane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from externalip_lab.controlplane import ControlPlane
from tests.integration.scheduler_harness import FakeAgents


@pytest.fixture
def clean(crds: ControlPlane, unique: str) -> Iterator[ControlPlane]:
    """No pools or claims left by earlier tests (they are cluster-scoped), and a
    namespace of this test's own; everything it made is removed afterwards."""
    crds.kubectl("delete", "ipclaimpools", "--all", "--wait=false")
    crds.kubectl("delete", "ipclaims", "--all", "--wait=false")
    # agents' inventories left by earlier tests name node addresses (192.0.2.10,
    # ...) that the scheduler would rightly never allocate
    crds.kubectl("delete", "ipnodes", "--all", "--wait=false")
    crds.ensure_namespace(unique)
    yield crds
    crds.kubectl("delete", "services", "--all", "-n", unique, "--wait=false")
    crds.kubectl("delete", "ipclaims", "--all", "--wait=false")
    crds.kubectl("delete", "ipclaimpools", "--all", "--wait=false")


@pytest.fixture
def agents(clean: ControlPlane) -> Iterator[FakeAgents]:
    """Three Ready nodes whose agents' Leases the test renews (kill/revive per node)."""
    fake = FakeAgents(clean, ["node-a", "node-b", "node-c"])
    yield fake
    fake.stop()
