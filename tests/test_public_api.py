from __future__ import annotations

import canarino


def test_all_is_sorted_and_exported() -> None:
    assert canarino.__all__ == sorted(canarino.__all__)
    for name in canarino.__all__:
        assert getattr(canarino, name).__doc__, name
