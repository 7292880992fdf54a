"""The ASGI entry uvicorn imports in each worker: `lib.gateway.server:app_factory`."""

from __future__ import annotations

from starlette.applications import Starlette

from lib.gateway.app import create_app


def app_factory() -> Starlette:
    return create_app()
