"""The documented JSON output of `rag ask --json` and `rag search --json` (JSON Schema, draft 2020-12).

The schema files live in gdn2_rag/schemas/; `load_schema("ask")` returns one as a dict, and `validator("ask")`
a ready jsonschema validator (jsonschema is a dev dependency: tests and scripts validate, the CLI doesn't).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).with_name("schemas")
NAMES = ("ask", "search", "passage")


@cache
def load_schema(name: str) -> dict:
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(NAMES)}")
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str):
    """A jsonschema validator for `name`, resolving the shared passage schema by its $id."""
    import jsonschema
    from referencing import Registry, Resource

    registry = Registry().with_resources(
        (load_schema(n)["$id"], Resource.from_contents(load_schema(n))) for n in NAMES
    )
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)
