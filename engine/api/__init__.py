"""The engine's HTTP API (FastAPI): app factory, routers, dependencies, problem JSON."""

from engine.api.app import create_app

__all__ = ["create_app"]
