"""The one exception tree users see.

    CanarinoError                 anything canarino reports to a person
     ├── InvalidInput             a file, option or value that cannot be used as given
     ├── NotFound                 a workspace, recipient, trace or incident that does not exist
     ├── WorkspaceError           a workspace that is missing, unreadable or half-made
     ├── RuleFileError            a law rule file that cannot be read or does not validate
     ├── DeliveryError            a notice that could not be handed to its channel
     └── PermissionDenied         an action the caller's role does not allow

Programmer errors stay ``ValueError``/``TypeError``. Messages say what is wrong and how to
fix it, name the file and place, and never carry personal data, secrets or whether a
record is a canary.
"""

from __future__ import annotations


class CanarinoError(Exception):
    """Base of every error canarino reports to a person."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.hint})" if self.hint else message


class InvalidInput(CanarinoError):
    """A file, option or value that cannot be used as given."""


class NotFound(CanarinoError):
    """A named thing that does not exist in the workspace."""


class WorkspaceError(CanarinoError):
    """A workspace that is missing, unreadable or incomplete."""


class RuleFileError(CanarinoError):
    """A rule file that cannot be read or does not fit the rule models."""


class DeliveryError(CanarinoError):
    """A notice that could not be handed to its delivery channel."""


class PermissionDenied(CanarinoError):
    """An action the caller is not allowed to take."""
