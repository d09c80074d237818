from __future__ import annotations

import pytest

from canarino.registry import Registry
from canarino.sources import SOURCES


def test_register_get_names_and_duplicates() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("b")
    class B: ...

    @reg.register("a")
    class A: ...

    assert reg.names() == ["a", "b"] and list(reg) == [A, B] and reg.get("b") is B
    assert "a" in reg and "z" not in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(A)
    with pytest.raises(KeyError, match="known: a, b"):
        reg.get("z")


def test_builtin_sources_are_registered() -> None:
    assert "csv" in SOURCES.names()
