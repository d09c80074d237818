"""Commands for the live trip-wires: mailbox polling, alerts and campaigns."""

from __future__ import annotations
