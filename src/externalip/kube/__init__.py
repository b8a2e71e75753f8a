"""Adapters to the Kubernetes API. The only layer that talks to the API server."""
