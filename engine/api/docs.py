"""The OpenAPI document as the runtime enforces it, and /docs served from local files.

``install_docs`` (called by ``create_app``):

- serves Swagger UI at ``/docs`` from the assets the pinned ``fastapi-offline``
  package ships (``/docs/assets/...``): nothing is loaded from a CDN, so the
  page works offline;
- writes this engine's own text limits (``query_max_chars``,
  ``params_max_chars``) into the submit schema, so a schema-valid body is never
  refused for its length.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from engine.api.deps import ApiConfig

__all__ = ["ASSETS_URL", "install_docs"]

ASSETS_URL = "/docs/assets"


def _assets_dir() -> str:
    return str(files("fastapi_offline") / "static")


def install_docs(app: FastAPI, config: ApiConfig) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=_assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            # No "valid" badge from validator.swagger.io: the page makes no outside request.
            swagger_ui_parameters={"validatorUrl": None},
        )

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base_openapi()
            _apply_text_limits(schema, config)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _apply_text_limits(schema: dict[str, Any], config: ApiConfig) -> None:
    body = schema.get("components", {}).get("schemas", {}).get("JobRequestBody", {})
    props = body.get("properties", {})
    if "query" in props:
        props["query"]["maxLength"] = min(props["query"].get("maxLength", config.query_max_chars),
                                          config.query_max_chars)
    if "params" in props:
        props["params"]["maxLength"] = min(props["params"].get("maxLength", config.params_max_chars),
                                           config.params_max_chars)
