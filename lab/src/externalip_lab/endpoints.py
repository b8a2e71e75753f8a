"""What the EndpointSlice controller would write, for the lab's pods.

No controller-manager runs in the lab, so this thread watches Services and
Pods and writes one EndpointSlice per Service and address family, listing
the pods the Service selects with their readiness and node, exactly the
input kube-proxy (and MetalLB, and our scheduler) read on a real cluster.
Services without a selector are left alone: their slices are the user's.

`slices_for` is the pure part; `EndpointSliceWriter` the loop around it.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from externalip import log
from externalip_lab.labapi import ApiError, LabApi, slice_path

_log = log.get(__name__)

MANAGED_BY = "externalip-lab"
FAMILIES = {"IPv4": "ipv4", "IPv6": "ipv6"}
WORKERS = 5


def _selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    # The lab's pods listen on the Service's numeric targetPort (80 by default).
    return [{"name": p.get("name", ""), "protocol": p.get("protocol", "TCP"),
             "port": p["targetPort"] if isinstance(p.get("targetPort"), int) else p["port"]}
            for p in service["spec"].get("ports") or []]


def _endpoint(pod: dict[str, Any], family: str) -> dict[str, Any] | None:
    ips = [i["ip"] for i in (pod.get("status") or {}).get("podIPs") or []]
    address = next((i for i in ips if (":" in i) == (family == "IPv6")), None)
    if address is None:
        return None
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return {"addresses": [address], "nodeName": pod["spec"].get("nodeName", ""),
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                          "name": pod["metadata"]["name"]}}


def slice_name(service: str, family: str) -> str:
    return f"{service}-lab-{FAMILIES[family]}"


def slices_for(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The EndpointSlices of one Service: one per family it has, listing the
    selected pods of its namespace (ready or not, as the real controller does)."""
    meta = service["metadata"]
    selector = service["spec"].get("selector") or {}
    if not selector:
        return []
    chosen = sorted((p for p in pods if p["metadata"]["namespace"] == meta["namespace"]
                     and _selects(selector, p)), key=lambda p: str(p["metadata"]["name"]))
    slices = []
    for family in service["spec"].get("ipFamilies") or ["IPv4"]:
        endpoints = [e for e in (_endpoint(p, family) for p in chosen) if e is not None]
        slices.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name(meta["name"], family),
                         "namespace": meta["namespace"],
                         "labels": {"kubernetes.io/service-name": meta["name"],
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": family, "endpoints": endpoints, "ports": _ports(service)})
    return slices


class EndpointSliceWriter:
    """Watches Services and Pods (all namespaces) and keeps the slices written."""

    def __init__(self, api: LabApi) -> None:
        self.api = api
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.written: dict[tuple[str, str], dict[str, Any]] = {}
        self._events: queue.Queue[tuple[str, str, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="lab-endpointslice")

    def start(self) -> EndpointSliceWriter:
        for kind, path in (("service", "/api/v1/services"), ("pod", "/api/v1/pods")):
            self._threads.append(threading.Thread(target=self._watch, args=(kind, path),
                                                  daemon=True, name=f"lab-watch-{kind}"))
        self._threads.append(threading.Thread(target=self._work, daemon=True,
                                              name="lab-endpointslices"))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._events.put(None)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self, kind: str, path: str) -> None:
        """List, then watch from the list's version; on any break, list again."""
        while not self._stop.is_set():
            try:
                listed = self.api.request("GET", path)
                self._events.put((kind, "RELIST", listed))
                for event in self.api.watch(path, listed["metadata"]["resourceVersion"]):
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._events.put((kind, event["type"], event["object"]))
            except (OSError, ApiError, ValueError, KeyError) as exc:
                _log.debug("lab watch restarting", kind=kind, error=str(exc))
                self._stop.wait(0.5)

    def _work(self) -> None:
        while (item := self._events.get()) is not None:
            kind, verb, obj = item
            store = self.services if kind == "service" else self.pods
            touched = self._record(store, verb, obj)
            for ns in touched:
                try:
                    self._sync_namespace(ns)
                except (OSError, ApiError) as exc:  # the next event of ns retries
                    _log.warning("lab could not write EndpointSlices", namespace=ns,
                                 error=str(exc))

    @staticmethod
    def _record(store: dict[tuple[str, str], dict[str, Any]], verb: str,
                obj: dict[str, Any]) -> set[str]:
        if verb == "RELIST":
            before = {k[0] for k in store}
            store.clear()
            for item in obj.get("items") or []:
                store[(item["metadata"]["namespace"], item["metadata"]["name"])] = item
            return before | {k[0] for k in store}
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if verb == "DELETED":
            store.pop(key, None)
        else:
            store[key] = obj
        return {key[0]}

    def _sync_namespace(self, namespace: str) -> None:
        """Write what changed, WORKERS at a time (the real controller runs 5
        workers: a burst of Services must not queue behind one connection)."""
        pods = [p for (ns, _), p in self.pods.items() if ns == namespace]
        desired = {}
        for (ns, _), svc in self.services.items():
            if ns == namespace:
                for s in slices_for(svc, pods):
                    desired[(ns, s["metadata"]["name"])] = s
        changed = [(k, o) for k, o in desired.items() if self.written.get(k) != o]
        gone = [k for k in self.written if k[0] == namespace and k not in desired]

        def write(item: tuple[tuple[str, str], dict[str, Any] | None]) -> None:
            key, obj = item
            if obj is None:
                self.api.delete(slice_path(*key))
                self.written.pop(key, None)
            else:
                self.api.apply(slice_path(*key), obj)
                self.written[key] = obj

        items: list[tuple[tuple[str, str], dict[str, Any] | None]] = [*changed]
        items += [(k, None) for k in gone]
        list(self._pool.map(write, items))

    def wait_idle(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not self._events.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
