from __future__ import annotations

import argparse

import pytest

from externalip.cli import build_parser
from externalip.settings import duration


@pytest.mark.parametrize(("text", "seconds"),
                         [("2s", 2.0), ("500ms", 0.5), ("1m", 60.0), ("20", 20.0), ("1.5s", 1.5)])
def test_durations_parse_like_go(text: str, seconds: float) -> None:
    assert duration(text) == seconds


def test_bad_duration_has_a_clear_message() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration("two seconds")


def test_seed_flags_and_defaults() -> None:
    agent = build_parser().parse_args(["claimcontroller"])
    # --hb is the seed's flag; its default grew from 2s to 10s when liveness moved to
    # the data plane (the Lease is only the slow backstop now: docs/failover.md)
    assert (agent.iface, agent.hb, agent.resync) == ("eth0", 10.0, 20.0)
    sched = build_parser().parse_args(["s"])
    assert (sched.mask, sched.nodefilter, sched.monitor, sched.leader_elect) == (
        32, "fair", 4.0, False)
    simple = build_parser().parse_args(["n", "--iface=lo", "--mask=24"])
    assert (simple.iface, simple.mask, simple.program) == ("lo", 24, "simple")
    assert build_parser().parse_args(["s", "--leader-elect"]).leader_elect is True
    assert build_parser().parse_args(["s", "--leader-elect=false"]).leader_elect is False


def test_environment_sets_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTERNALIP_IFACE", "bond0")
    monkeypatch.setenv("EXTERNALIP_HB", "500ms")
    opts = build_parser().parse_args(["agent"])
    assert (opts.iface, opts.hb) == ("bond0", 0.5)
    assert build_parser().parse_args(["agent", "--iface", "eth1"]).iface == "eth1"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EXTERNALIP_MASK", "wide")
    with pytest.raises(SystemExit, match="EXTERNALIP_MASK"):
        build_parser()


def test_help_shows_defaults_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["agent", "--help"])
    out = capsys.readouterr().out
    assert "EXTERNALIP_IFACE" in out and "default eth0" in out
