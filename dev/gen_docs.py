"""Write docs/config-reference.md and docs/schemas/*.json from the models (see signal_sync/reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

from signal_sync.reference import config_reference_markdown, json_schemas

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    (DOCS / "schemas").mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (DOCS / "schemas" / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    (DOCS / "config-reference.md").write_text(config_reference_markdown(), encoding="utf-8")
    print(f"wrote {DOCS}/config-reference.md and {len(json_schemas())} schemas")


if __name__ == "__main__":
    main()
