from __future__ import annotations

import ipaddress
import struct

from externalip.net.announce import arp_frame, na_message
from externalip.net.conflict import claimed_address

MAC = bytes.fromhex("020000000001")


def test_a_gratuitous_arp_names_the_address_and_its_new_owner() -> None:
    ip = ipaddress.IPv4Address("192.0.2.200")
    assert claimed_address(arp_frame(MAC, ip, 1)) == (ip, MAC)
    assert claimed_address(arp_frame(MAC, ip, 2)) == (ip, MAC)
    probe = arp_frame(MAC, ipaddress.IPv4Address("0.0.0.0"), 1)  # ACD probe: claims nothing
    assert claimed_address(probe) is None


def test_an_unsolicited_na_names_the_target_and_its_link_layer_address() -> None:
    ip = ipaddress.IPv6Address("2001:db8::200")
    icmp = na_message(MAC, ip)
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) \
        + ipaddress.IPv6Address("fe80::1").packed + ipaddress.IPv6Address("ff02::1").packed
    frame = bytes.fromhex("333300000001") + MAC + struct.pack("!H", 0x86DD) + ip6 + icmp
    assert claimed_address(frame) == (ip, MAC)
    assert claimed_address(b"\x00" * 20) is None
