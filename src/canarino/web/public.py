"""Public pages for customers: "Was I affected?" and "Is this really us?"."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
