"""Where a mapped destination field takes its value from: a path into the event, a constant, or
a list of those tried in order.

A path is checked against the event model when the config is loaded (an unknown root, a key
below a value that is never an object, a ``context`` field the event model does not keep all
fail naming the path), and compiled once into a getter, so delivering an event never parses a
path. A getter returns a *present* value or None: an absent key, null, a blank string, an
object or a list all count as nothing, which leaves the field out of the request, exactly as
a missing trait does in the default mapping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from signal_sync.identity import ResolvedEvent

Getter = Callable[[ResolvedEvent], Any]
"""A compiled source: the present value it finds in an event, or None."""

OBJECT_ROOTS = ("traits", "properties")
"""Roots whose keys are the producer's own: any key below them may be mapped."""
SCALAR_ROOTS = ("event", "type", "user_id", "anonymous_id")
"""Top-level event values (``event`` is the name the events table uses: ``Identified``,
``page`` or a track's name)."""
ROOT_ALIASES = {"userId": "user_id", "anonymousId": "anonymous_id"}
CAMPAIGN_KEYS = ("source", "medium", "name", "content", "term")
CONTEXT_PATHS = (
    "context.ip",
    "context.page.url",
    *(f"context.campaign.{key}" for key in CAMPAIGN_KEYS),
    "context.consent.canonical.<category>",
)
"""What the event model keeps of ``context`` (``context.traits`` is merged into ``traits``)."""
TRAIT_CAMEL_CASE = {"firstName": "first_name", "lastName": "last_name", "postalCode": "postal_code"}
"""Trait keys the event model reads in both spellings and keeps in snake_case."""
SCALAR_TRAITS = ("email",)
"""Traits that are always text when an event is delivered (an event without a valid email is
dropped before mapping)."""
ROOTS_HINT = (
    "a path starts with traits., properties. or context., or is one of event, type, user_id, "
    "anonymous_id; a constant is written {const: <value>}"
)


@dataclass(frozen=True, slots=True)
class Path:
    """A path into the event, checked against the event model: ``root`` plus ``keys``."""

    root: str
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join((self.root, *self.keys))


@dataclass(frozen=True, slots=True)
class Const:
    """A constant value (a non-blank string, a number or a boolean)."""

    value: str | int | float | bool

    def __str__(self) -> str:
        return f"{{const: {json.dumps(self.value)}}}"


Choice = Path | Const


@dataclass(frozen=True, slots=True)
class Source:
    """One source, or several tried in order until one is present."""

    choices: tuple[Choice, ...]

    def __str__(self) -> str:
        if len(self.choices) == 1:
            return str(self.choices[0])
        return "first of [" + ", ".join(str(choice) for choice in self.choices) + "]"

    def shown(self) -> Any:
        """The source as written in a config file."""
        forms = [
            {"const": choice.value} if isinstance(choice, Const) else str(choice) for choice in self.choices
        ]
        return forms[0] if len(forms) == 1 else forms

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            parse_source, serialization=core_schema.plain_serializer_function_ser_schema(Source.shown)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, _schema: Any, _handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return SOURCE_JSON_SCHEMA


_CONST_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"const": {"type": ["string", "number", "boolean"]}},
    "required": ["const"],
    "additionalProperties": False,
}
SOURCE_JSON_SCHEMA: dict[str, Any] = {
    "description": "A path (traits.x, properties.x, context.campaign.name, event, ...), "
    "{const: value}, or a list of them tried in order.",
    "anyOf": [
        {"type": "string", "minLength": 1},
        _CONST_JSON_SCHEMA,
        {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, _CONST_JSON_SCHEMA]}},
    ],
}


def parse_source(value: Any) -> Source:
    """A source as written in the config: a path string, ``{const: value}``, or a non-empty list
    of those. ``ValueError`` says what is wrong, naming the path."""
    if isinstance(value, Source):
        return value
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list maps nothing; give at least one source (or null to drop)")
        return Source(tuple(_choice(item, in_list=True) for item in value))
    return Source((_choice(value, in_list=False),))


def _choice(value: Any, *, in_list: bool) -> Choice:
    if isinstance(value, str):
        return parse_path(value)
    if isinstance(value, dict):
        return _const(value)
    what = "a list" if isinstance(value, list) else type(value).__name__
    if in_list:
        raise ValueError(f"a list of sources holds paths and {{const: ...}}, not {what}")
    raise ValueError(f"a source is a path string, {{const: <value>}} or a list of them, not {what}")


def _const(value: dict[str, Any]) -> Const:
    if set(value) != {"const"}:
        raise ValueError("a constant is written {const: <value>} with no other key")
    constant = value["const"]
    if isinstance(constant, str):
        if not constant.strip():
            raise ValueError("a constant must not be blank (null drops a field)")
        return Const(constant)
    if isinstance(constant, bool | int):
        return Const(constant)
    if isinstance(constant, float) and constant == constant and abs(constant) != float("inf"):
        return Const(constant)
    raise ValueError("a constant is a non-blank string, a finite number or a boolean")


def parse_path(text: str) -> Path:
    """A path checked against the event model; ``ValueError`` naming it when it cannot resolve."""
    parts = text.split(".")
    if any(not part or part != part.strip() for part in parts):
        raise ValueError(
            f"{text!r} is not a path: its keys are separated by single dots, without spaces around them"
        )
    root, keys = ROOT_ALIASES.get(parts[0], parts[0]), tuple(parts[1:])
    if root in OBJECT_ROOTS:
        if not keys:
            raise ValueError(f"{text!r} is the whole {root} object; name a key below it ({root}.plan)")
        if root == "traits":
            _check_trait(text, keys)
        return Path(root, keys)
    if root in SCALAR_ROOTS:
        if keys:
            raise ValueError(f"{text!r} goes below {root}, which is text, not an object")
        return Path(root, ())
    if root == "context":
        _check_context(text, keys)
        return Path(root, keys)
    raise ValueError(f"unknown source root {parts[0]!r} in {text!r}; {ROOTS_HINT}")


def _check_trait(text: str, keys: tuple[str, ...]) -> None:
    if keys[0] in TRAIT_CAMEL_CASE:
        raise ValueError(f"{text!r}: traits are kept in snake_case; write traits.{TRAIT_CAMEL_CASE[keys[0]]}")
    if keys[0] in SCALAR_TRAITS and len(keys) > 1:
        raise ValueError(f"{text!r} goes below traits.{keys[0]}, which is text, not an object")


def _check_context(text: str, keys: tuple[str, ...]) -> None:
    known = ", ".join(CONTEXT_PATHS)
    if not keys:
        raise ValueError(f"{text!r} is the whole context object; name a field below it ({known})")
    head = keys[0]
    if head == "traits":
        raise ValueError(
            f"{text!r}: context.traits are merged into traits; write traits.{'.'.join(keys[1:])}"
        )
    if (
        head == "ip"
        or (head == "page" and keys[1:2] == ("url",))
        or (head == "campaign" and keys[1:2] and keys[1] in CAMPAIGN_KEYS)
    ):
        scalar_length = 1 if head == "ip" else 2
        if len(keys) > scalar_length:
            below = ".".join(("context", *keys[:scalar_length]))
            raise ValueError(f"{text!r} goes below {below}, which is text, not an object")
        return
    if keys[:2] == ("consent", "canonical") and len(keys) >= 3:
        if len(keys) > 3:
            raise ValueError(f"{text!r} goes below a consent category, which is true or false")
        return
    raise ValueError(f"{text!r} is not kept by the event model; the context paths are {known}")


# --- compiled getters ------------------------------------------------------------------------


def present(value: Any) -> bool:
    """Whether a value found in an event is sent: not null, not blank, not an object or a list."""
    if value is None or isinstance(value, dict | list):
        return False
    return not (isinstance(value, str) and not value.strip())


def _walk(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _raw_getter(path: Path) -> Getter:
    """The value at ``path`` in a resolved event, present or not (``present`` decides)."""
    keys = path.keys
    if path.root == "traits":
        if len(keys) == 1:
            key = keys[0]
            return lambda resolved: resolved.traits.get(key)
        return lambda resolved: _walk(resolved.traits, keys)
    if path.root == "properties":
        if len(keys) == 1:
            key = keys[0]
            return lambda resolved: resolved.event.properties.get(key)
        return lambda resolved: _walk(resolved.event.properties, keys)
    if path.root == "event":
        return lambda resolved: resolved.name
    if path.root in ("type", "user_id", "anonymous_id"):
        attribute = path.root
        return lambda resolved: getattr(resolved.event, attribute)
    return _context_getter(keys)


def _context_getter(keys: tuple[str, ...]) -> Getter:
    head = keys[0]
    if head == "ip":
        return lambda resolved: resolved.event.context.ip
    if head == "page":
        return lambda resolved: resolved.event.context.page.url
    if head == "campaign":
        attribute = keys[1]
        return lambda resolved: getattr(resolved.event.context.campaign, attribute)
    category = keys[2]
    return lambda resolved: resolved.event.context.consent.canonical.get(category)


def compile_source(source: Source) -> Getter:
    """One getter for a source: the first present value among its choices, or None."""
    getters: list[Getter] = []
    for choice in source.choices:
        if isinstance(choice, Const):
            constant = choice.value
            getters.append(lambda _resolved, constant=constant: constant)  # type: ignore[misc]
        else:
            getters.append(_raw_getter(choice))
    if len(getters) == 1:
        only = getters[0]

        def single(resolved: ResolvedEvent) -> Any:
            value = only(resolved)
            return value if present(value) else None

        return single

    def first(resolved: ResolvedEvent) -> Any:
        for getter in getters:
            value = getter(resolved)
            if present(value):
                return value
        return None

    return first
