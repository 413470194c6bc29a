"""Reference material generated from the models, so docs cannot drift from the code.

``docs/config-reference.md`` and ``docs/schemas/*.json`` are written by
``python dev/gen_docs.py`` from these functions, and a unit test fails when the checked-in
files differ from what the models say now.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from signal_sync.config import (
    MailgunIntegration,
    MauticBasicAuth,
    MauticIntegration,
    MauticOAuth2Auth,
    Settings,
)
from signal_sync.streams.records import DeadLetterHeaders, LegacyDeadLetter, Outcome, SignalEvent


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema of each wire contract."""
    event = SignalEvent.model_json_schema(mode="validation")
    event["title"] = "signal.events value"
    event["description"] = (
        "One analytics event. camelCase aliases are accepted for ids and traits "
        "(messageId, anonymousId, userId, firstName, lastName, postalCode); unknown fields are ignored. "
        "A record over 1,000,000 bytes, not UTF-8 JSON, or with objects and arrays nested more than "
        "64 levels deep is an invalid event."
    )
    outcome = Outcome.model_json_schema(mode="serialization", by_alias=True)
    outcome["title"] = "signal.deliveries value"
    headers = DeadLetterHeaders.model_json_schema(mode="validation", by_alias=True)
    headers["title"] = "signal.deliveries.dlq headers"
    legacy = LegacyDeadLetter.model_json_schema(mode="serialization", by_alias=True)
    legacy["title"] = "signal.deliveries.dlq value written by earlier versions (signal.dead-letter/v1)"
    return {
        "event.schema.json": event,
        "outcome.schema.json": outcome,
        "dead-letter-headers.schema.json": headers,
        "dead-letter-v1.schema.json": legacy,
    }


_MODULE_PATH = re.compile(r"\b(?:[a-z_]\w*\.)+(?=[A-Z])")
"""``typing.``, ``pydantic.types.``, ``pathlib._local.`` (Python 3.13) …: where a type is defined
is not what a reader of the reference needs, and it changes between Python versions."""


_ANNOTATED = re.compile(r"Annotated\[(.*), FieldInfo\(.*\)\]")
"""A discriminated union's ``Annotated[A | B, FieldInfo(...)]``: the reader needs ``A | B``."""


def _type_name(info: FieldInfo) -> str:
    text = _ANNOTATED.sub(r"\1", _MODULE_PATH.sub("", str(info.annotation)))
    return text.replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return f"`{info.default_factory()}`"  # type: ignore[call-arg]
    if info.default is PydanticUndefined or info.default is None:
        return "—"
    return f"`{info.default}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, f"{prefix}{name}."))
            continue
        if name == "integrations":
            continue
        secret = "yes" if "SecretStr" in str(annotation) or annotation is SecretStr else ""
        example = f"`{info.examples[0]}`" if info.examples else ""
        description = (info.description or "").replace("|", "\\|")
        cells = (f"`{prefix}{name}`", _type_name(info), _default(info), secret, description, example)
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def config_reference_markdown() -> str:
    """The configuration reference page."""
    header = "| field | type | default | secret | description | example |\n|---|---|---|---|---|---|"
    parts = [
        "# Configuration reference",
        "",
        "Generated from `signal_sync/config.py` by `python dev/gen_docs.py`; do not edit by hand.",
        "",
        "A YAML file given with `-c/--config`. Strings may use `${VAR}` or `${VAR:-default}`; a missing "
        "variable fails at start naming the field. Every field can be overridden by an environment "
        "variable `SIGNAL_SYNC_<SECTION>__<FIELD>` (e.g. `SIGNAL_SYNC_KAFKA__BOOTSTRAP_SERVERS`). "
        "Secrets are never printed; each has a `*_file` twin for mounted secrets.",
        "",
        "## Worker settings",
        "",
        header,
        *_rows(Settings, ""),
    ]
    for model, title in ((MauticIntegration, "mautic"), (MailgunIntegration, "mailgun")):
        parts += [
            "",
            f"## `integrations[]` with `type: {title}`",
            "",
            (model.__doc__ or "").strip(),
            "",
            header,
        ]
        parts += _rows(model, "")
        if model is MauticIntegration:
            for auth in (MauticBasicAuth, MauticOAuth2Auth):
                kind = auth.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
                parts += ["", f"### `auth` with `type: {kind}`", "", (auth.__doc__ or "").strip(), "", header]
                parts += _rows(auth, "auth.")
    return "\n".join(parts) + "\n"
