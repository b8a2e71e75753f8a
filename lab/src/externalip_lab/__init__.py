"""The externalip lab: a real control plane and nodes in network namespaces.

A separate distribution (`lab/pyproject.toml`) that needs the source checkout
(it builds Kubernetes from tools/ and applies deploy/); the runtime image
never carries it. It adds `externalip lab` to the command line through the
`externalip.commands` entry point group.
"""
