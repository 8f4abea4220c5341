"""The OpenAPI document as the runtime enforces it, and /docs served from local files.

``install_docs`` (called by ``create_app``):

- serves Swagger UI at ``/docs`` from the assets the pinned ``fastapi-offline``
  package ships (``/docs/assets/...``): nothing is loaded from a CDN, so the
  page works offline;
- writes this engine's own text limits (``query_max_chars``,
  ``params_max_chars``) into the submit schema, so a schema-valid body is never
  refused for its length;
- writes integer bounds as exact integers: FastAPI's OpenAPI models hold them
  as floats, and 2**256-1 as a float is 1.157920892373162e+77 (= 2**256), so
  schema tools would generate values the runtime refuses.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from engine.api.deps import ApiConfig
from registry_client.eip712 import UINT256_MAX

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
            _exact_integer_bounds(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _apply_text_limits(schema: dict[str, Any], config: ApiConfig) -> None:
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("JobRequestBody", "VanaInputBody"):  # /jobs and Vana's /job/{id} share the SQL limit
        query = schemas.get(name, {}).get("properties", {}).get("query")
        if query is not None:
            query["maxLength"] = min(query.get("maxLength", config.query_max_chars), config.query_max_chars)
    props = schemas.get("JobRequestBody", {}).get("properties", {})
    if "params" in props:
        props["params"]["maxLength"] = min(props["params"].get("maxLength", config.params_max_chars),
                                           config.params_max_chars)


# Bounds too large for a float to hold exactly, by the float they were rounded to.
_EXACT = {float(UINT256_MAX): UINT256_MAX}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _exact_integer_bounds(node: Any) -> None:
    """Walk the document; in every integer schema, turn float bounds back into ints."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = _EXACT.get(value, int(value))
        for child in node.values():
            _exact_integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _exact_integer_bounds(child)
