from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from canarino.vault import Vault


def test_seal_round_trips_and_hides_plaintext() -> None:
    vault = Vault(b"s" * 32)
    record = {"email": "anna@posta.it", "first_name": "Anna"}
    sealed = vault.seal(record, context="customer")
    assert b"anna" not in sealed and vault.open(sealed, context="customer") == record
    assert vault.seal(record, context="customer") != sealed  # fresh nonce every time


def test_sealed_record_is_bound_to_its_context_and_key() -> None:
    sealed = Vault(b"s" * 32).seal({"a": 1}, context="customer")
    with pytest.raises(InvalidTag):
        Vault(b"s" * 32).open(sealed, context="canary")
    with pytest.raises(InvalidTag):
        Vault(b"t" * 32).open(sealed, context="customer")


def test_keys_are_not_in_repr() -> None:
    assert "s" * 8 not in repr(Vault(b"s" * 32))
