from __future__ import annotations

import re

from externalip.core.model import (
    NODE_LABEL,
    Claim,
    ClaimSpec,
    LabelSelector,
    Pool,
    PoolSpec,
    node_label,
    role_label,
)


def test_seed_pool_parses_with_defaults() -> None:
    pool = Pool.from_object({"metadata": {"name": "test-pool"}, "spec": {
        "cidr": "192.168.0.248/29",
        "ranges": [["192.168.0.249", "192.168.0.250"], ["192.168.0.252", "192.168.0.253"]],
        "allocated": {"192.168.0.249": "192-168-0-249-32"}}})
    assert pool.spec.ranges == (("192.168.0.249", "192.168.0.250"),
                                ("192.168.0.252", "192.168.0.253"))
    assert pool.spec.auto_assign is True
    assert pool.spec.allocated == {"192.168.0.249": "192-168-0-249-32"}
    assert PoolSpec.from_dict(pool.spec.to_dict()) == pool.spec


def test_claim_round_trip_sets_the_node_label() -> None:
    claim = Claim(name="192-0-2-1-32",
                  spec=ClaimSpec(cidr="192.0.2.1/32", node_name="n1", services=("a/s",)))
    obj = claim.to_object()
    assert obj["metadata"]["labels"] == {NODE_LABEL: "n1", role_label("n1"): "holder"}
    back = Claim.from_object(obj)
    assert back.spec == claim.spec
    unassigned = Claim(name="x", spec=ClaimSpec(cidr="192.0.2.1/32"),
                       labels={NODE_LABEL: "old"}).to_object()
    assert "labels" not in unassigned["metadata"]


def test_label_selector_semantics() -> None:
    sel = LabelSelector.from_dict({"matchLabels": {"zone": "a"}, "matchExpressions": [
        {"key": "role", "operator": "In", "values": ["edge"]},
        {"key": "drain", "operator": "DoesNotExist"}]})
    assert sel is not None
    assert sel.matches({"zone": "a", "role": "edge"})
    assert not sel.matches({"zone": "a", "role": "edge", "drain": ""})
    assert not sel.matches({"zone": "b", "role": "edge"})
    assert LabelSelector.from_dict(sel.to_dict()) == sel


def test_claim_labels_name_the_holder_and_the_standbys_by_role() -> None:
    spec = ClaimSpec(cidr="192.0.2.1/32", node_name="n1", standbys=("n2", "n3"))
    labels = Claim(name="x", spec=spec, labels={role_label("old"): "holder"}).to_object()[
        "metadata"]["labels"]
    assert labels == {NODE_LABEL: "n1", role_label("n1"): "holder",
                      role_label("n2"): "standby-1", role_label("n3"): "standby-2"}
def test_long_node_names_get_a_valid_unique_label_value() -> None:
    short = "node-1.example.org"
    assert node_label(short) == short
    names = ["a" * 63, "a" * 64, "a" * 253, "b" * 47 + "-" + "c" * 60, "x" * 45 + "..-y" * 40]
    labels = [node_label(n) for n in names]
    assert labels[0] == names[0]
    assert len(set(labels)) == len(labels)
    for value in labels:
        assert len(value) <= 63
        assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value), value
    claim = Claim(name="c", spec=ClaimSpec(cidr="192.0.2.1/32", node_name="a" * 200))
    assert claim.to_object()["metadata"]["labels"] == {
        NODE_LABEL: node_label("a" * 200), role_label("a" * 200): "holder"}
