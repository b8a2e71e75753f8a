"""The lab's own line to the API server: plain HTTPS with the admin identity.

The lab writes what a kubelet and the EndpointSlice controller would (Pods and
their status, EndpointSlices) and watches Services and Pods to do so. It runs
in threads of the lab's process, so this is synchronous and standard-library
only; `kubectl` would cost a process per write.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from externalip_lab.controlplane import ControlPlane

FIELD_MANAGER = "externalip-lab"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class LabApi:
    """One keep-alive connection per thread; watches get their own."""

    def __init__(self, cp: ControlPlane) -> None:
        assert cp.certs is not None
        self.port = cp.apiserver_port
        self.ctx = ssl.create_default_context(cafile=str(cp.certs.ca_cert))
        self.ctx.load_cert_chain(str(cp.certs.admin_cert), str(cp.certs.admin_key))
        self._local = threading.local()

    def _connect(self, timeout: float | None = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            conn = getattr(self._local, "conn", None) or self._connect()
            self._local.conn = conn
            try:
                conn.request(method, path, body=data, headers={
                    "Content-Type": content_type, "Accept": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if resp.status >= 300:
            raise ApiError(resp.status, payload[:300].decode(errors="replace"))
        return json.loads(payload) if payload else None

    def apply(self, path: str, obj: dict[str, Any]) -> Any:
        """Server-side apply of obj at path (the object's own URL)."""
        return self.request("PATCH", f"{path}?fieldManager={FIELD_MANAGER}&force=true", obj,
                            "application/apply-patch+yaml")

    def merge_status(self, path: str, status: dict[str, Any]) -> Any:
        return self.request("PATCH", f"{path}/status", {"status": status},
                            "application/merge-patch+json")

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path, {"gracePeriodSeconds": 0})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def watch(self, path: str, resource_version: str) -> Iterator[dict[str, Any]]:
        """Events of one watch; ends when the server closes it."""
        conn = self._connect(timeout=None)
        try:
            conn.request("GET", f"{path}?watch=1&allowWatchBookmarks=true"
                         f"&resourceVersion={quote(resource_version)}")
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(resp.status, resp.read()[:300].decode(errors="replace"))
            for line in resp:
                yield json.loads(line)
        finally:
            conn.close()


def pod_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def slice_path(namespace: str, name: str = "") -> str:
    return (f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
            + (f"/{name}" if name else ""))
