"""Commands for leak alerts and the campaigns that sightings form."""

from __future__ import annotations
