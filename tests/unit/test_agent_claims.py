"""Claims -> wants and statuses for the claims-mode agent."""

from __future__ import annotations

from externalip.core.claims import StatusLedger, node_status, wants_from_claims
from externalip.core.model import Claim, ClaimSpec, ClaimStatus


def claim(name: str, cidr: str, node: str = "n1", link: str = "", *,
          status: ClaimStatus | None = None, rv: str = "1") -> Claim:
    return Claim(name, ClaimSpec(cidr=cidr, node_name=node, link=link),
                 status or ClaimStatus(), resource_version=rv)


def test_only_own_claims_with_link_override() -> None:
    wants, invalid = wants_from_claims(
        [claim("a", "192.0.2.5/32"), claim("b", "192.0.2.6/32", node="n2"),
         claim("c", "2001:db8::1/128", "n1", "eth1"), claim("d", "bogus")], "n1", "eth0")
    assert [(w.owners, w.link, str(w.interface)) for w in wants] == [
        (("a",), "eth0", "192.0.2.5/32"), (("c",), "eth1", "2001:db8::1/128")]
    assert "bogus" in invalid["d"]


def test_status_ready_keeps_since_on_adoption() -> None:
    old = ClaimStatus(ready=True, holder="n1", since="2026-01-01T00:00:00Z")
    c = claim("a", "192.0.2.5/32", status=old)
    assert StatusLedger().due([c], "n1", held={"a"}, problems={}, now="later") == {}
    moved = claim("a", "192.0.2.5/32", status=ClaimStatus(ready=True, holder="n2", since="x"))
    assert StatusLedger().due([moved], "n1", held={"a"}, problems={}, now="T") == {
        "a": ClaimStatus(ready=True, holder="n1", since="T")}


def test_problem_reported_and_not_repeated_before_watch_catches_up() -> None:
    ledger = StatusLedger()
    c = claim("a", "192.0.2.5/32", rv="7")
    out = ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T")
    assert out == {"a": ClaimStatus(ready=False, message="taken")}
    ledger.wrote(c, out["a"])
    assert ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T") == {}
    newer = claim("a", "192.0.2.5/32", rv="8")  # someone else changed it since: write again
    assert ledger.due([newer], "n1", held=set(), problems={"a": "taken"}, now="T") == out
    ledger.keep([])  # the claim is gone: what we wrote about it is forgotten
    assert ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T") == out


def test_node_status_lists_ips_sorted() -> None:
    wants, _ = wants_from_claims([claim("b", "192.0.2.9/32"), claim("a", "192.0.2.10/32")],
                                 "n1", "eth0")
    s = node_status("eth0", wants, "0.1.0")
    assert s.addresses == ("192.0.2.10", "192.0.2.9") and s.link == "eth0"
