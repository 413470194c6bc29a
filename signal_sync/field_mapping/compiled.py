"""An integration's ``mapping`` and ``events`` blocks, validated and compiled once at config load.

The fields an event of name E sends are the destination's default fields for E, changed by the
integration's ``mapping`` (every event), then by ``events.E.mapping`` (that event only): a
field mapped to a source is sent from it (in the default field's place, or after the default
fields when it is new), a field mapped to null is dropped. ``events`` changes the events the
integration takes: a name with a block is taken (added when it is not a default event), a name
mapped to null is no longer taken. Without either block the destination's own default code
runs, so every request is the seed's, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from signal_sync.config_problems import problems_error
from signal_sync.field_mapping.sources import Getter, Source, compile_source
from signal_sync.field_mapping.tables import MAILGUN_VARS_PREFIX, FieldTable

FieldSources = dict[str, Source | None]
"""Destination field → its source, or None to drop a default field."""

EVENT_TYPE_NAMES = {
    "identify": "an identify event is named Identified",
    "track": "a track event is named by its event field",
}


class EventMapping(BaseModel):
    """One event an integration takes, with the fields only this event sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: FieldSources = Field(
        default_factory=dict,
        description="Destination field → source for this event only, on top of the integration's "
        "mapping; null drops a field this event would send.",
        examples=[{"signal_order_id": "properties.order_id"}],
    )


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to the default fields of an event: set ``field`` from ``get``, or drop it."""

    field: str
    key: str
    """The name inside its container: a Mailgun custom variable's name, else the field."""
    get: Getter | None
    """The compiled source; None drops the field."""


@dataclass(frozen=True, slots=True)
class CompiledMapping:
    """What an integration sends: its events, and per event the edits to the default fields."""

    table: FieldTable
    events: frozenset[str]
    edits: Mapping[str, tuple[Edit, ...]] = field(default_factory=dict)
    default: bool = True
    """No mapping and no events block: the destination's default requests, unchanged."""
    mapping: FieldSources = field(default_factory=dict)
    event_mappings: Mapping[str, FieldSources] = field(default_factory=dict)

    def edits_for(self, event: str) -> tuple[Edit, ...]:
        return self.edits.get(event, ())


def default_mapping(table: FieldTable) -> CompiledMapping:
    return CompiledMapping(table=table, events=frozenset(table.events))


def compile_mapping(
    table: FieldTable, mapping: FieldSources | None, events: Mapping[str, EventMapping | None] | None
) -> CompiledMapping:
    """The compiled mapping; a ``ValidationError`` naming each field at fault (``mapping.<field>``,
    ``events.<event>.mapping.<field>``) when the blocks ask for something that cannot be sent."""
    if not mapping and not events:
        return default_mapping(table)
    mapping = mapping or {}
    events = events or {}
    problems: list[tuple[tuple[str, ...], str]] = []
    _check_fields(table, mapping, ("mapping",), problems)
    for name, spec in mapping.items():
        if spec is None and name not in table.default_names() and not table.field_problem(name):
            problems.append((("mapping", name), _not_sent(table, name, None)))
    taken = dict.fromkeys(table.events, True)
    event_mappings: dict[str, FieldSources] = {}
    for name, event in events.items():
        if (problem := _event_name_problem(name)) is not None:
            problems.append((("events", name), problem))
            continue
        if event is None:
            taken.pop(name, None)
            continue
        taken[name] = True
        event_mappings[name] = event.mapping
        where = ("events", name, "mapping")
        _check_fields(table, event.mapping, where, problems)
        sent = {item.field for item in table.defaults_for(name)} | {
            key for key, value in mapping.items() if value is not None
        }
        for key, value in event.mapping.items():
            if value is None and key not in sent and not table.field_problem(key):
                problems.append(((*where, key), _not_sent(table, key, name)))
    if not taken:
        problems.append((("events",), "leaves the integration no event to take"))
    if problems:
        raise problems_error("field mapping", "field_mapping", problems)
    getters = {name: _edit(table, name, source) for name, source in mapping.items()}
    edits: dict[str, tuple[Edit, ...]] = {}
    for name in taken:
        merged = dict(getters)
        for key, source in event_mappings.get(name, {}).items():
            merged[key] = _edit(table, key, source)
        edits[name] = tuple(merged.values())
    return CompiledMapping(
        table=table,
        events=frozenset(taken),
        edits=edits,
        default=False,
        mapping=dict(mapping),
        event_mappings=event_mappings,
    )


def _edit(table: FieldTable, name: str, source: Source | None) -> Edit:
    key = name.removeprefix(MAILGUN_VARS_PREFIX) if table.destination == "mailgun" else name
    return Edit(name, key, None if source is None else compile_source(source))


def _check_fields(
    table: FieldTable,
    mapping: FieldSources,
    where: tuple[str, ...],
    problems: list[tuple[tuple[str, ...], str]],
) -> None:
    for name, source in mapping.items():
        if (problem := table.field_problem(name)) is not None:
            problems.append(((*where, name), problem))
        elif source is not None and name in table.drop_only:
            problems.append(((*where, name), f"{name} can only be dropped (null): {table.drop_only[name]}"))


def _not_sent(table: FieldTable, name: str, event: str | None) -> str:
    if event is None:
        return f"null drops a default field, and {name} is not one ({table.destination} sends it nowhere)"
    return f"null drops a field {event} sends, and {event} does not send {name}"


def _event_name_problem(name: str) -> str | None:
    if not name or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "an event name is non-blank text without spaces around it or control characters"
    if name in EVENT_TYPE_NAMES:
        return f"events are named as outcomes name them: {EVENT_TYPE_NAMES[name]} (a page event is page)"
    return None


# --- check-config --------------------------------------------------------------------------


def describe(compiled: CompiledMapping) -> dict[str, Any]:
    """The resolved mapping as ``check-config`` prints it: the events taken, then every field with
    its source and where that comes from (``signal-sync``, ``default``, ``mapping``), for every
    event and then what each event sends on top."""
    table = compiled.table
    every: dict[str, Any] = {}
    for item in table.fields:
        if item.event is None:
            every[item.field] = _row(item.source, "signal-sync" if item.owned else "default")
    for name, source in compiled.mapping.items():
        every[name] = _row(source, "mapping")
    per_event: dict[str, dict[str, Any]] = {}
    for event in sorted(compiled.events, key=_event_order(table)):
        rows: dict[str, Any] = {}
        for item in table.defaults_for(event):
            if item.event is not None and item.field not in compiled.mapping:
                rows[item.field] = _row(item.source, "default")
        for name, source in compiled.event_mappings.get(event, {}).items():
            rows[name] = _row(source, f"events.{event}")
        if rows:
            per_event[event] = rows
    return {
        "events": sorted(compiled.events, key=_event_order(table)),
        "every_event": every,
        "per_event": per_event,
    }


def _row(source: Source | str | None, origin: str) -> dict[str, Any]:
    if source is None:
        return {"source": None, "from": origin, "sent": False}
    return {"source": str(source), "from": origin, "sent": True}


def _event_order(table: FieldTable) -> Any:
    order = {name: index for index, name in enumerate(table.events)}
    return lambda name: (order.get(name, len(order)), name)


def describe_lines(compiled: CompiledMapping, integration: str) -> list[str]:
    """``describe`` as aligned text lines, as ``check-config`` prints them."""
    described = describe(compiled)
    lines = [f"resolved mapping of {integration} ({compiled.table.destination})"]
    lines.append("  events: " + ", ".join(described["events"]))
    sections = [("every event", described["every_event"])]
    sections += [(event, rows) for event, rows in described["per_event"].items()]
    width = max(len(name) for _, rows in sections for name in rows)
    for title, rows in sections:
        lines.append(f"  {title}:")
        for name, row in rows.items():
            source = row["source"] if row["sent"] else "(dropped)"
            lines.append(f"    {name.ljust(width)}  {source}  [{row['from']}]")
    return lines
