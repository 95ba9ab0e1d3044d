"""JSON Schema for every event, so that shops in any language can validate before sending.

Run ``shopstream schema --out schemas/`` to write one ``<Model>.schema.json`` per event.
"""

from __future__ import annotations

import json
from pathlib import Path

from shopstream.events import INPUTS, OUTPUTS, DeadLetter


def schemas() -> dict[str, dict]:
    """JSON Schema of every input, output and the dead letter, by model name."""
    # Inputs as they are accepted; outputs and dead letters as they are written.
    found = {model.__name__: model.model_json_schema(mode="validation") for model in INPUTS.values()}
    for model in [*OUTPUTS.values(), DeadLetter]:
        found[model.__name__] = model.model_json_schema(mode="serialization")
    return found


def write(out: Path) -> list[Path]:
    """Write one file per schema into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        paths.append(path)
    return paths
