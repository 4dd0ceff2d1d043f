"""Conveyor's HTTP API: a thin Flask (APIFlask) layer over core."""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
