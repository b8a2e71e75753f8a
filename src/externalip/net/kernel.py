"""Kernel constants for links and addresses (linux/if_addr.h, net/if.h, if_arp.h)."""

from __future__ import annotations

# Our mark in IFA_PROTO. The kernel reserves 0-3 (unspec, loopback, RA, link
# local); 0xE1 ("E", "I") is not used by any software we know of.
PROTO = 0xE1

# ifaddrmsg flags (linux/if_addr.h).
IFA_F_NODAD = 0x02
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
IFA_F_PERMANENT = 0x80

INFINITY_LIFE = 0xFFFFFFFF

# net/if.h and if_arp.h
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_NOARP = 0x80
ARPHRD_ETHER = 1

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
