"""The hand-packed address requests (net.addrbatch) and the hand decoder of
address notifications (net.addrcache) agree with each other and with the
kernel's layout, and the decoder survives any bytes."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from externalip.net.addrbatch import ADD, RENEW, deladdr_message, newaddr_message
from externalip.net.addrcache import decode_address, messages
from externalip.net.kernel import IFA_F_NODAD, PROTO, RTM_DELADDR, RTM_NEWADDR

IF = ipaddress.ip_interface


def test_a_request_decodes_to_the_address_it_names() -> None:
    for cidr, flags in (("192.0.2.7/32", 0), ("2001:db8::7/128", IFA_F_NODAD)):
        data = newaddr_message(5, 3, IF(cidr), 30, 0, mode=ADD)
        [(kind, _flags, at, length)] = list(messages(data))
        addr = decode_address(data, at, length)
        assert kind == RTM_NEWADDR and addr is not None
        assert (addr.ifindex, str(addr.interface), addr.proto, addr.flags, addr.valid_lft) == (
            3, cidr, PROTO, flags, 30)
        assert addr.ours and not addr.tentative


def test_modes_and_removal() -> None:
    add = newaddr_message(1, 2, IF("192.0.2.8/24"), 30, 0, mode=ADD)
    renew = newaddr_message(1, 2, IF("192.0.2.8/24"), 30, 0, mode=RENEW)
    assert struct.unpack_from("=H", add, 6)[0] & 0x200  # NLM_F_EXCL: never take one over
    assert struct.unpack_from("=H", renew, 6)[0] & 0x100  # NLM_F_REPLACE
    data = deladdr_message(9, 2, IF("192.0.2.8/24")) * 2
    found = list(messages(data))
    assert [m[0] for m in found] == [RTM_DELADDR, RTM_DELADDR]
    addr = decode_address(data, found[1][2], found[1][3])
    assert addr is not None and str(addr.interface) == "192.0.2.8/24" and not addr.ours


@given(st.binary(max_size=200))
def test_decoder_survives_any_bytes(data: bytes) -> None:
    for kind, _flags, at, length in messages(data):
        if kind in (RTM_NEWADDR, RTM_DELADDR) and at + 24 <= len(data):
            # malformed (the kernel never sends it): a clean error at most, no hang
            with contextlib.suppress(ValueError, struct.error):
                decode_address(data, at, min(length, len(data) - at))
