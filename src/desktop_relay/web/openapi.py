"""The API's OpenAPI 3.1 document: the packaged openapi.json, and the part of it each caller may see.

The file describes the user API and the admin API. Pupils and teachers must not learn that the
admin API exists (every admin address answers them 404), so they are served the user API only:
the paths outside /api/admin/, without the admin tag and the components named Admin* (or
adminToken), which only admin paths use. Paths marked `x-desktop-relay-planned` are described
ahead of their code and are never served.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

ADMIN_PREFIX = "/api/admin/"
PLANNED = "x-desktop-relay-planned"


@cache
def packaged_document() -> dict[str, Any]:
    """The document as shipped, planned paths included (the tests read it whole)."""
    text = files("desktop_relay.web").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def admin_document() -> dict[str, Any]:
    """What a caller who may use the admin API is served: every path the relay has."""
    document = packaged_document()
    return {**document, "paths": {path: item for path, item in document["paths"].items() if not item.get(PLANNED)}}


@cache
def user_document() -> dict[str, Any]:
    """What everyone else is served: the user API, without a trace of the admin API."""
    document = admin_document()
    components = {
        kind: {name: value for name, value in entries.items() if not name.lower().startswith("admin")}
        for kind, entries in document["components"].items()
    }
    return {
        **document,
        "paths": {path: item for path, item in document["paths"].items() if not path.startswith(ADMIN_PREFIX)},
        "tags": [tag for tag in document.get("tags", []) if tag["name"] != "admin"],
        "components": components,
    }
