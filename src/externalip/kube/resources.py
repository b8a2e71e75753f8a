"""The lightkube classes that address our custom resources on the API server.

The typed views of their contents are in core.model (pure); these only name
the group, version and plural for the client.
"""

from __future__ import annotations

from lightkube.generic_resource import create_global_resource

from externalip import API_GROUP, API_VERSION

IpClaimPoolResource = create_global_resource(
    API_GROUP, API_VERSION, "IpClaimPool", "ipclaimpools"
)
IpClaimResource = create_global_resource(API_GROUP, API_VERSION, "IpClaim", "ipclaims")
IpNodeResource = create_global_resource(API_GROUP, API_VERSION, "IpNode", "ipnodes")
