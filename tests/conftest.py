"""Shared fixtures: one real control plane (etcd + kube-apiserver) per test run."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from externalip.kube.api import FIELD_MANAGER, Api
from externalip_lab.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "deploy" / "crds"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for network namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    control_plane.install_crds(CRD_DIR)
    return control_plane


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """A lightkube client with the admin identity, for what tests set up and check."""
    client = AsyncClient(config=KubeConfig.from_file(control_plane.kubeconfig),
                         field_manager=FIELD_MANAGER)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[Api]:
    """Our own API gateway with the admin identity, for the objects under test."""
    gateway = Api.connect(str(control_plane.kubeconfig))
    try:
        yield gateway
    finally:
        await gateway.close()


@pytest.fixture
def unique() -> str:
    """A short unique prefix for names of objects, namespaces and links a test creates."""
    return "eip" + secrets.token_hex(3)
