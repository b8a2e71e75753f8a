"""A real etcd + kube-apiserver on this machine's loopback, for tests and the lab."""

from externalip_lab.controlplane.server import ControlPlane

__all__ = ["ControlPlane"]
