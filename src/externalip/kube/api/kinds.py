"""The resources we read and write, and their REST paths.

A small descriptor instead of lightkube's resource classes: the gateway
builds paths from it, and the controllers name resources without importing
any client library.
"""

from __future__ import annotations

from dataclasses import dataclass

from externalip import API_GROUP, API_VERSION


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}"

    def item(self, name: str, namespace: str | None = None, subresource: str = "") -> str:
        path = f"{self.collection(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


SERVICES = Kind("", "v1", "services", True)
NODES = Kind("", "v1", "nodes", False)
EVENTS = Kind("", "v1", "events", True)
LEASES = Kind("coordination.k8s.io", "v1", "leases", True)
ENDPOINT_SLICES = Kind("discovery.k8s.io", "v1", "endpointslices", True)
CLAIMS = Kind(API_GROUP, API_VERSION, "ipclaims", False)
POOLS = Kind(API_GROUP, API_VERSION, "ipclaimpools", False)
IPNODES = Kind(API_GROUP, API_VERSION, "ipnodes", False)
