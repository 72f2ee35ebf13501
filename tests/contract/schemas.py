"""The exported contract, for any test that wants to check a message against it.

Exported once per test process with the real `clearline contract export` code path
(into a temporary folder removed at exit), so a test checks what a consumer in another
language would load, not an in-memory shortcut:

    from tests.contract.schemas import assert_valid
    assert_valid("decision", record)        # or "variance", "order.created", …
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from clearline import contract


@functools.cache
def exported() -> Path:
    """The folder of this process's export."""
    from clearline.pipelines.cli.contract import documents

    folder = Path(tempfile.mkdtemp(prefix="clearline-contract-"))
    atexit.register(shutil.rmtree, folder, True)
    contract.write(folder, documents())
    return folder


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A draft 2020-12 validator (formats checked) for an exported schema: an event type,
    "decision", "variance", or a headers schema such as "event-headers"."""
    schema = json.loads((exported() / contract.schema_path(name)).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema `name`, as "$.path: message"."""
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(instance)]


def assert_valid(name: str, instance: Any) -> None:
    found = problems(name, instance)
    assert not found, f"not a valid {name}: {'; '.join(found[:5])}\n{json.dumps(instance)[:1000]}"
