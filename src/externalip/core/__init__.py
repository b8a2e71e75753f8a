"""The pure core: no I/O, no clocks, no Kubernetes client. Everything here is
a function of its arguments, so it is tested with properties, not mocks."""
