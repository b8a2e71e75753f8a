"""Connecting to the API server."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
from lightkube import AsyncClient, KubeConfig

FIELD_MANAGER = "externalip"


def load_config(kubeconfig: str) -> KubeConfig:
    """The kubeconfig named, else in-cluster service-account config, else ~/.kube/config."""
    if kubeconfig:
        return KubeConfig.from_file(Path(kubeconfig))
    return KubeConfig.from_env()


async def connect(kubeconfig: str, *, request_timeout: float = 10.0) -> AsyncClient:
    return AsyncClient(
        config=load_config(kubeconfig), field_manager=FIELD_MANAGER,
        timeout=httpx.Timeout(request_timeout)
    )


def raw_http(client: AsyncClient) -> httpx.AsyncClient:
    """lightkube's own configured httpx client (base URL, TLS, credentials).

    The informer needs what lightkube's watch does not offer (bookmarks, the
    raw JSON, an explicit re-list on 410); reusing this client keeps one
    connection pool and one source of credentials for typed and raw calls.
    """
    inner: httpx.AsyncClient = client._client._client
    return inner
