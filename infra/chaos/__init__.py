"""Chaos scenarios on the embedded stack (placeholder of branch chaos-b: the harness's own
``__init__`` from branch chaos-a replaces this one at merge)."""

__all__: list[str] = []
