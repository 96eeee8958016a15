"""JSON Schemas of the files cascadekit writes: ``evaluate`` reports and ``router`` files.

Examples
--------
>>> from cascadekit.schemas import load_schema
>>> load_schema("router")["title"]
'cascadekit router file'
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ..errors import UnknownNameError

__all__ = ["SCHEMAS", "load_schema"]

SCHEMAS = ("evaluate", "router")


def load_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema ``name`` (one of :data:`SCHEMAS`) as a dict."""
    if name not in SCHEMAS:
        raise UnknownNameError(f"Unknown schema {name!r}; expected one of {', '.join(SCHEMAS)}.")
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
