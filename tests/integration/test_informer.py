"""The informer against the real API server: list, watch, 410 Gone, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml

from externalip.kube.api import CLAIMS, Api
from externalip.kube.informer import ADDED, DELETED, MODIFIED, Informer
from externalip_lab.controlplane import ControlPlane
from tests.helpers import eventually

pytestmark = pytest.mark.integration


def _claim(name: str, ip: str, node: str = "n1") -> str:
    return yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
                           "metadata": {"name": name, "labels": {"test": name[:9]}},
                           "spec": {"cidr": f"{ip}/32", "nodeName": node}})


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, obj: events.append((kind, obj["metadata"]["name"])))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 30)
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_list_then_watch_delivers_every_change(crds: ControlPlane, api: Api,
                                                     unique: str) -> None:
    crds.apply(_claim(f"{unique}-a", "192.0.2.1"))
    informer = Informer(api, CLAIMS, labels={"test": unique}, page_size=1)
    async with running(informer) as events:
        assert events == [(ADDED, f"{unique}-a")]
        crds.apply(_claim(f"{unique}-b", "192.0.2.2"))
        crds.kubectl("label", "ipclaim", f"{unique}-a", "extra=1")
        crds.kubectl("delete", "ipclaim", f"{unique}-b")
        await eventually(lambda: len(events) == 4)
        assert events[1:] == [(ADDED, f"{unique}-b"), (MODIFIED, f"{unique}-a"),
                              (DELETED, f"{unique}-b")]
        assert set(informer.store) == {f"{unique}-a"}
        assert "managedFields" not in informer.store[f"{unique}-a"]["metadata"]


async def test_gone_relists_and_reports_only_the_difference(crds: ControlPlane,
                                                            api: Api,
                                                            unique: str) -> None:
    crds.apply(_claim(f"{unique}-keep", "192.0.2.11"))
    crds.apply(_claim(f"{unique}-gone", "192.0.2.12"))
    informer = Informer(api, CLAIMS, labels={"test": unique})
    handed_out = informer.store  # as the scheduler's writer keeps it, before any list
    async with running(informer) as events:
        pass  # synced; the informer is now away (as after a long network outage)
    events.clear()
    crds.kubectl("delete", "ipclaim", f"{unique}-gone")
    crds.apply(_claim(f"{unique}-new", "192.0.2.13"))
    # The version it resumes from is older than the server keeps: the watch
    # answers 410 Gone. After the re-list the handlers must see exactly the
    # changes made while it was away, once each.
    informer.resource_version = "1"
    async with running(informer):
        await eventually(lambda: informer.relists >= 2)
        await asyncio.sleep(0.5)
    assert sorted(events) == sorted([(DELETED, f"{unique}-gone"), (ADDED, f"{unique}-new")])
    assert set(informer.store) == {f"{unique}-keep", f"{unique}-new"}
    assert set(handed_out) == set(informer.store)  # every list refills the same store


class LateList:
    """The gateway, with list answers that arrive late when asked: whatever
    `meanwhile` does (create an object) reaches the live watch before the
    list's older snapshot reaches the informer."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self.meanwhile: Callable[[], Awaitable[None]] | None = None
        self.streamed: list[tuple[str, str]] = []  # what the watch received, as it came

    async def list(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._api.list(*args, **kwargs)
        if self.meanwhile is not None:
            await self.meanwhile()
        return page

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async for event in self._api.watch(*args, **kwargs):
            self.streamed.append((event["type"], event["object"]["metadata"].get("name", "")))
            yield event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


async def test_a_relist_beside_a_live_watch_keeps_what_the_watch_brought_meanwhile(
        crds: ControlPlane, api: Api, unique: str) -> None:
    """The agent relists its claims when its fence re-arms, while the watch
    runs on. An object the watch delivers during the list is newer than the
    list's snapshot: it must stay, since the watch will not send it again."""
    crds.apply(_claim(f"{unique}-a", "192.0.2.21"))
    late = LateList(api)
    informer = Informer(late, CLAIMS, labels={"test": unique})  # type: ignore[arg-type]
    async with running(informer) as events:
        async def create_b() -> None:
            crds.apply(_claim(f"{unique}-b", "192.0.2.22"))
            await eventually(lambda: (ADDED, f"{unique}-b") in late.streamed)

        late.meanwhile = create_b
        await informer.relist()
        late.meanwhile = None
        await asyncio.sleep(1)  # the watch goes on: nothing brings b back if it was dropped
        assert set(informer.store) == {f"{unique}-a", f"{unique}-b"}
        assert (DELETED, f"{unique}-b") not in events


async def test_watch_survives_an_api_server_restart(crds: ControlPlane, api: Api,
                                                    unique: str) -> None:
    crds.apply(_claim(f"{unique}-x", "192.0.2.21"))
    informer = Informer(api, CLAIMS, labels={"test": unique}, max_backoff=1.0)
    async with running(informer) as events:
        await asyncio.to_thread(crds.restart_apiserver)
        crds.apply(_claim(f"{unique}-y", "192.0.2.22"))
        await eventually(lambda: f"{unique}-y" in informer.store, within=60)
        assert events.count((ADDED, f"{unique}-x")) == 1
        assert events.count((ADDED, f"{unique}-y")) == 1
