"""Who answers ARP for an IP? Run inside the client namespace: sends an ARP
request for the IP every 100 ms for a while and prints the MAC addresses that
replied, space-separated. Two MACs mean two nodes claim the IP (split brain).

    python -m externalip_lab.arpscan IP SECONDS [IFACE] [SENDER_IP]
"""

from __future__ import annotations

import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def responders(ip: str, seconds: float, iface: str = "eth0",
               sender: str = "192.0.2.100") -> set[str]:
    target = socket.inet_aton(ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((iface, 0))
        mac: bytes = s.getsockname()[4]
        s.settimeout(0.02)
        request = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                   + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                   + mac + socket.inet_aton(sender) + b"\0" * 6 + target)
        seen: set[str] = set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.send(request)
            window = time.monotonic() + 0.1
            while time.monotonic() < window:
                try:
                    frame = s.recv(128)
                except OSError:
                    continue
                is_reply = frame[20:22] == b"\x00\x02"
                if is_reply and frame[28:32] == target:
                    seen.add(frame[22:28].hex(":"))
        return seen


def main(argv: list[str]) -> int:
    found = responders(argv[0], float(argv[1]), *argv[2:4])
    print(" ".join(sorted(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
