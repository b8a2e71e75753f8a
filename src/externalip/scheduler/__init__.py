"""The scheduler's adapters: API objects in, writes out; decisions live in core."""
