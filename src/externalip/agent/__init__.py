"""Pure logic of the node agent (no I/O): address diffing, claim statuses."""
