from __future__ import annotations

import ipaddress

from externalip.core.fence import Fence
from externalip.core.holding import Want

A = Want(ipaddress.ip_interface("192.0.2.200/32"), "eth0", ("192-0-2-200-32",))
B = Want(ipaddress.ip_interface("2001:db8::200/128"), "eth0", ("2001-db8--200-128",))


def test_cut_off_node_yields_an_address_another_node_announces() -> None:
    fence = Fence()
    assert fence.heard(A.interface.ip, [A, B], renewing=False)
    assert fence.filter([A, B], renewing=False) == [B]
    assert not fence.heard(A.interface.ip, [B], renewing=False)  # once


def test_while_renewing_the_api_is_authoritative() -> None:
    fence = Fence()
    assert not fence.heard(A.interface.ip, [A], renewing=True)
    assert fence.filter([A], renewing=True) == [A]


def test_renewals_back_forget_what_was_yielded() -> None:
    fence = Fence()
    fence.heard(A.interface.ip, [A], renewing=False)
    assert fence.filter([A], renewing=True) == [A]
    assert fence.yielded == set()


def test_addresses_we_do_not_hold_are_ignored() -> None:
    fence = Fence()
    assert not fence.heard(ipaddress.ip_address("192.0.2.9"), [A], renewing=False)
    assert fence.yielded == set()
