"""Signed SMS and voice webhooks from telephony providers."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
