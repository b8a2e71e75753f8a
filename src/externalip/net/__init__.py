"""Adapters to the node's network: netlink addresses, ARP/NA announcements."""
