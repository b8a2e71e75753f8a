"""externalip: External IPs and LoadBalancer IPs for bare-metal Kubernetes."""

__version__ = "0.1.0"

API_GROUP = "ipcontroller.ext"
API_VERSION = "v1"
