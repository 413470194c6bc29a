"""Configurable field and event mapping (an integration's ``mapping`` and ``events`` blocks).

``sources`` parses and compiles where a field's value comes from, ``tables`` describes the
seeds' default fields and events per destination, ``compiled`` validates the blocks and turns
them into per-event edits that ``destinations/mautic.py`` and ``mailgun.py`` apply to their
default fields. The rules and a worked example: docs/mapping.md.
"""

from __future__ import annotations

from signal_sync.field_mapping.compiled import (
    CompiledMapping,
    Edit,
    EventMapping,
    FieldSources,
    compile_mapping,
    default_mapping,
    describe,
    describe_lines,
)
from signal_sync.field_mapping.sources import Source, present
from signal_sync.field_mapping.tables import MAILGUN, MAUTIC, TABLES, FieldTable

__all__ = [
    "MAILGUN",
    "MAUTIC",
    "TABLES",
    "CompiledMapping",
    "Edit",
    "EventMapping",
    "FieldSources",
    "FieldTable",
    "Source",
    "compile_mapping",
    "default_mapping",
    "describe",
    "describe_lines",
    "present",
]
