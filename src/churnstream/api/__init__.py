"""The REST API (`churnstream serve`): score customer records over HTTP."""

from __future__ import annotations

from churnstream.api.app import create_app

__all__ = ["create_app"]
