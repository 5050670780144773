"""Everything ``streams.serving`` exports is importable and listed once."""

from __future__ import annotations

import streams.serving


def test_every_export_is_importable() -> None:
    names = streams.serving.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(streams.serving, name) is not None
