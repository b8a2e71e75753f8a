"""A list+watch cache of one resource, as client-go's reflector does it.

lightkube's watch gives neither bookmarks nor a way to know that it re-listed,
so this informer speaks the protocol itself through the API gateway:
- list (paginated) to fill the store and get a resourceVersion;
- watch from that version with bookmarks, so a reconnect resumes from a
  recent version instead of one the server has compacted away;
- on 410 Gone (from the watch or an ERROR event) re-list, and hand the
  handlers the difference between the old and new store as ordinary
  ADDED / MODIFIED / DELETED events, so nothing is missed or repeated;
- on any other failure, reconnect with capped exponential backoff.
Objects are the API's JSON dicts; handlers convert them to typed views.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from externalip import log
from externalip.kube.api import Api, ApiError, GoneError, Kind, TooManyRequestsError
from externalip.kube.paths import object_key

Handler = Callable[[str, dict[str, Any]], None]
Transform = Callable[[dict[str, Any]], dict[str, Any]]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

_log = log.get(__name__)


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def _selector(pairs: Mapping[str, str] | None) -> str | None:
    if not pairs:
        return None
    return ",".join(f"{k}={v}" if v else k for k, v in pairs.items())


class Informer:
    def __init__(
        self,
        api: Api,
        kind: Kind,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        transform: Transform = strip_managed_fields,
        page_size: int = 500,
        max_backoff: float = 5.0,
    ) -> None:
        self._api = api
        self._kind = kind
        self._namespace = namespace
        self._params = {
            k: v
            for k, v in (("labelSelector", _selector(labels)), ("fieldSelector", _selector(fields)))
            if v
        }
        self._transform = transform
        self._page_size = page_size
        self._max_backoff = max_backoff
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self.store: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.name = kind.collection(namespace)
        self.relists = 0  # observable for tests and metrics
        self._listing = asyncio.Lock()
        self._held: list[dict[str, Any]] | None = None  # watch events during a list
        # Monotonic time since which the cache has been continuously connected
        # (None while it is not): silence in the data means something only
        # while we were actually listening.
        self.connected_since: float | None = None

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _dispatch(self, event_type: str, obj: dict[str, Any]) -> None:
        for handler in self._handlers:
            try:
                handler(event_type, obj)
            except Exception:  # a broken handler must not stop the cache
                _log.exception("informer handler failed", informer=self.name,
                               event=event_type, object=object_key(obj))

    def _connected(self) -> None:
        if self.connected_since is None:
            self.connected_since = time.monotonic()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    await self._relist()
                await self._watch()
                failures = 0
            except GoneError:
                _log.info("watch expired, re-listing", informer=self.name)
                self.resource_version = None
            except (ApiError, OSError, ValueError) as exc:
                self.connected_since = None
                failures += 1
                delay = min(self._max_backoff, 0.2 * 2 ** min(failures, 10))
                if isinstance(exc, TooManyRequestsError):  # the server (re)initialises
                    delay = min(delay, 1.0)
                delay *= random.uniform(0.5, 1.0)
                _log.warning("watch failed, retrying", informer=self.name, error=str(exc),
                             failures=failures, retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    async def relist(self) -> None:
        """List afresh now (a consistent read from etcd), delivering the
        differences to the handlers. A running watch goes on (its events
        wait for the list); one it still owes from before the list may
        briefly show an older object, and the newer one follows in order."""
        await self._relist()

    async def _relist(self) -> None:
        """The list, with the watch's events held while it is in flight and
        applied after it: the list's snapshot may be older than what the
        watch delivers meanwhile, and replacing the store with it would drop
        those objects for good (the watch does not send them again)."""
        async with self._listing:
            self._held = []
            try:
                fresh, version = await self._list()
                self._replace(fresh, version)
            finally:
                held, self._held = self._held, None
            for event in held:
                self._handle(event)

    async def _list(self) -> tuple[dict[str, dict[str, Any]], str]:
        fresh: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {**self._params, "limit": self._page_size}
        while True:
            try:
                page = await self._api.list(self._kind, self._namespace, params)
            except GoneError:  # the continue token expired: start over
                fresh.clear()
                params.pop("continue", None)
                continue
            self._connected()
            for item in page.get("items") or ():
                obj = self._transform(item)
                fresh[object_key(obj)] = obj
            token = page.get("metadata", {}).get("continue")
            if not token:
                version = page["metadata"]["resourceVersion"]
                break
            params["continue"] = token
        return fresh, version

    def _replace(self, fresh: dict[str, dict[str, Any]], version: str) -> None:
        # The same dict, refilled: the scheduler's writer and pool status hold
        # the store they were given and put their writes' responses in it; a
        # new dict per list left them writing to, and reading from, the empty
        # store they got before the first list.
        old = dict(self.store)
        self.store.clear()
        self.store.update(fresh)
        self.resource_version = version
        self.relists += 1
        for key, obj in old.items():
            if key not in fresh:
                self._dispatch(DELETED, obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._dispatch(ADDED, obj)
            elif before["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._dispatch(MODIFIED, obj)
        # A listed store lives until the next list: keep it out of the cyclic
        # collector's sight. A full collection walks every object and holds
        # the GIL throughout: 0.9 s over 10,000 claims on a busy node, which
        # froze the heartbeat thread until its fence lapsed and peers judged
        # the node down; the lapse forced a relist, and the next collection
        # walked the new store again. (JSON objects hold no cycles: nothing is
        # leaked by freezing without a collection first.)
        gc.freeze()
        self._synced.set()
        _log.debug("listed", informer=self.name, objects=len(fresh), resource_version=version)

    async def _watch(self) -> None:
        server_timeout = random.randint(240, 360)  # spread reconnects of many watchers
        params = {
            **self._params,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": server_timeout,
        }
        # A silent connection longer than the server's own timeout is dead
        # (bookmarks arrive about once a minute on a live one).
        events = self._api.watch(self._kind, self._namespace, params,
                                 read_timeout=server_timeout + 30.0, on_open=self._connected)
        async for event in events:
            self._handle(event)

    def _handle(self, event: dict[str, Any]) -> None:
        if self._held is not None:  # a list is in flight: after it
            self._held.append(event)
            return
        kind, obj = event["type"], event["object"]
        self.resource_version = obj["metadata"]["resourceVersion"]
        if kind == "BOOKMARK":
            return
        obj = self._transform(obj)
        key = object_key(obj)
        if kind == DELETED:
            self.store.pop(key, None)
        else:
            self.store[key] = obj
        self._dispatch(kind, obj)
