from __future__ import annotations

from externalip.scheduler.writer import remember


def test_a_write_response_never_replaces_a_newer_cached_object() -> None:
    store = {"c": {"metadata": {"resourceVersion": "256"}, "status": {"ready": True}}}
    remember(store, "c", {"metadata": {"resourceVersion": "255"}})
    assert store["c"]["metadata"]["resourceVersion"] == "256"
    remember(store, "c", {"metadata": {"resourceVersion": "300"}})
    assert store["c"]["metadata"]["resourceVersion"] == "300"
    remember(store, "new", {"metadata": {"resourceVersion": "1"}})
    assert "new" in store
