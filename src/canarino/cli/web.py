"""Commands for the web app: ``serve`` and the people and machines that sign in."""

from __future__ import annotations
