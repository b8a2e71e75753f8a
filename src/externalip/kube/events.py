"""Events on the objects users look at (`kubectl describe service ...`).

Repeats of the same (object, reason, message) are folded into one Event whose
count grows, as kubectl's and client-go's recorders do, so a Service that
waits for a pool for an hour leaves one Event, not thousands. Events about
cluster-scoped objects (pools, claims) go to the `default` namespace, where
`kubectl describe` looks for them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from externalip import log
from externalip.kube.api import EVENTS, Api, ApiError
from externalip.kube.times import now_rfc3339

_log = log.get(__name__)

NORMAL, WARNING = "Normal", "Warning"
_FOLD_WINDOW = 600.0  # seconds during which a repeat raises the count


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return cls(
            api_version=obj.get("apiVersion", "v1"),
            kind=obj.get("kind", ""),
            name=meta["name"],
            namespace=meta.get("namespace", ""),
            uid=meta.get("uid", ""),
        )


class EventRecorder:
    def __init__(self, api: Api, component: str, host: str = "") -> None:
        self._api = api
        self._component = component
        self._host = host
        # (ref, reason, message) -> (namespace, event name, count, monotonic time)
        self._recent: dict[tuple[ObjectRef, str, str], tuple[str, str, int, float]] = {}

    async def emit(self, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Record an Event; failures are logged, never raised (events are best effort)."""
        key = (regarding, reason, message)
        namespace = regarding.namespace or "default"
        try:
            seen = self._recent.get(key)
            if seen and time.monotonic() - seen[3] < _FOLD_WINDOW:
                ns, name, count, _ = seen
                await self._patch(ns, name, count + 1)
                self._recent[key] = (ns, name, count + 1, time.monotonic())
                return
            name = await self._create(namespace, regarding, type_, reason, message)
            self._recent[key] = (namespace, name, 1, time.monotonic())
            if len(self._recent) > 4096:  # bound memory: forget the oldest half
                for old in sorted(self._recent, key=lambda k: self._recent[k][3])[:2048]:
                    del self._recent[old]
        except (ApiError, OSError, ValueError) as exc:
            _log.warning("could not record event", object=regarding.name, reason=reason,
                         error=str(exc))
        except Exception as exc:
            _log.warning("could not record event", object=regarding.name, reason=reason,
                         error=repr(exc))

    async def _create(self, namespace: str, ref: ObjectRef, type_: str, reason: str,
                      message: str) -> str:
        name = f"{ref.name}.{uuid.uuid4().hex[:12]}"
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name,
                "namespace": ref.namespace or None, "uid": ref.uid or None,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._component, "host": self._host or None},
            "reportingComponent": self._component,
            "reportingInstance": self._host or self._component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._api.create(EVENTS, body, namespace)
        return name

    async def _patch(self, namespace: str, name: str, count: int) -> None:
        await self._api.merge_patch(EVENTS, name, {"count": count,
                                                   "lastTimestamp": now_rfc3339()}, namespace)
