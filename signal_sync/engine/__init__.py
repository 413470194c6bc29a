"""The delivery engine: key-ordered concurrency, in-order commits, per-integration gates."""
