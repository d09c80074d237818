"""Commands for the public pages: registering outbound contacts customers can verify."""

from __future__ import annotations
