"""How Mautic's ``GET /api/contacts`` filters: the ``search`` string and the ``where`` clauses.

Both are read the way Mautic reads them, quirks included, because a client that looks a
contact up by email meets every one of them:

* ``search`` (``CoreBundle/Helper/SearchStringHelper``): space-separated terms, each
  ``[!]command:[+][!]string`` or a bare string. The string is lowercased; ``+`` at its start
  makes it *strict*, ``!`` at its start (or second) negates it, and when both characters
  occur *anywhere* in a string that starts with either, Mautic sets both flags and drops the
  first two characters (so ``email:+ab!c@x.com`` searches for anything *but* ``b!c@x.com``).
* ``email:`` (``LeadRepository``) is ``email LIKE string%``, or ``LIKE string`` when strict.
  LIKE is not escaped: ``_`` matches any one character and ``%`` any run. A bare string (or
  an unknown command, taken literally as ``command:string`` and strict) is matched
  ``LIKE %string%`` against firstname, lastname, email, company, city, state, zipcode and
  country. Matching is case-insensitive (MySQL's ``*_ci`` collations).
* ``where[i][col|expr|val]`` (``CommonRepository::buildWhereClauseFromArray``): values pass
  through ``InputHelper::clean`` first, so ``'`` becomes ``&#39;`` and ``eq`` never matches
  an address holding one; ``in``/``notIn`` decode entities again and split on commas, so
  ``expr=in`` with one address is an exact, case-insensitive match.

Only the parts a client of the contact API meets are emulated; anything else (quotes,
parentheses, ``OR``, other search commands, other columns or expressions) is refused with a
``NotEmulated`` error instead of being answered wrongly.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from signal_sync.sandbox.mautic_dnc import sanitize_special_chars

CATCH_ALL_COLUMNS = ("firstname", "lastname", "email", "company", "city", "state", "zipcode", "country")
MAUTIC_COMMANDS = frozenset(
    {
        "is",
        "ids",
        "name",
        "company",
        "company_id",
        "owner",
        "ip",
        "tag",
        "stage",
        "segment",
        "duplicate",
        "email_sent",
        "email_read",
        "email_queued",
        "email_pending",
        "page_source",
        "page_source_id",
        "import_id",
        "import_action",
        "page_id",
        "sms_sent",
        "web_sent",
        "mobile_sent",
        "common",
    }
)
"""Mautic's other search commands (en_US): recognised, but not emulated here."""
WHERE_EXPRESSIONS = frozenset(
    {"eq", "neq", "like", "notLike", "in", "notIn", "isNull", "isNotNull", "isEmpty", "isNotEmpty"}
)
_WHERE_KEY = re.compile(r"^where\[(\d+)\]\[(col|column|expr|val|value)\]$")
_TAG = re.compile(r"<[^>]*>?")

Row = Mapping[str, Any]
"""A contact as the filters see it: column name → value (``id`` and the field aliases)."""


class NotEmulated(ValueError):
    """A filter Mautic understands but this emulator does not model."""


@dataclass(frozen=True)
class Term:
    """One parsed search term."""

    command: str
    string: str
    negate: bool = False
    strict: bool = False


def like(pattern: str, value: Any) -> bool:
    """MySQL ``value LIKE pattern`` (default escape ``\\``), case-insensitive."""
    if value is None:
        return False
    regex = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            regex.append(re.escape(next(chars, "\\")))
        elif char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        else:
            regex.append(re.escape(char))
    return re.fullmatch("".join(regex), str(value), re.IGNORECASE | re.DOTALL) is not None


def _flags(string: str, negate: bool) -> tuple[str, bool, bool]:
    """``SearchStringHelper::setFilter``: the string lowercased, then its strict/not prefix
    (which, when present, also overrides a negation set by ``!command:``)."""
    string = string.strip().lower()
    strict_pos, not_pos = string.find("+"), string.find("!")
    if strict_pos in (0, 1) or not_pos in (0, 1):
        if strict_pos >= 0 and not_pos >= 0:
            return string[2:], True, True
        if strict_pos == 0 and not_pos < 0:
            return string[1:], False, True
        if strict_pos < 0 and not_pos == 0:
            return string[1:], True, False
    return string, negate, False


def parse_search(raw: str) -> list[Term]:
    """The terms of a ``search`` string (combined with AND)."""
    text = _TAG.sub("", raw).strip()
    if any(c in text for c in '"()'):
        raise NotEmulated("search: quotes and parentheses are not emulated")
    terms: list[Term] = []
    for word in text.split():
        if word.lower() == "and":
            continue
        if word.lower() == "or":
            raise NotEmulated("search: OR is not emulated")
        command, colon, rest = word.partition(":")
        if not colon:
            command, rest = "", word
        elif ":" in rest:
            raise NotEmulated("search: a term with two colons is not emulated")
        command_negated = command.startswith("!")
        command = command.removeprefix("!").strip()
        if colon and rest == "":
            continue  # Mautic drops a command without a value rather than searching everything
        string, negate, strict = _flags(rest, command_negated)
        if string == "":
            continue
        terms.append(Term(command=command, string=string, negate=negate, strict=strict))
    return terms


def _term_matcher(term: Term) -> Callable[[Row], bool]:
    if term.command == "email":
        pattern = term.string if term.strict else f"{term.string}%"
        if term.negate:  # NOT LIKE: a NULL email matches neither way
            return lambda row: row.get("email") is not None and not like(pattern, row.get("email"))
        return lambda row: like(pattern, row.get("email"))
    if term.command in MAUTIC_COMMANDS:
        raise NotEmulated(f"search: the command {term.command!r} is not emulated")
    if term.command:  # unknown commands are searched as the literal text, strictly
        pattern, negate = f"{term.command}:{term.string}", False
    else:
        pattern = term.string if term.strict or "%" in term.string else f"%{term.string}%"
        negate = term.negate
    if negate:  # NOT LIKE on every column, AND-ed: one NULL column excludes the row
        return lambda row: all(
            row.get(c) is not None and not like(pattern, row.get(c)) for c in CATCH_ALL_COLUMNS
        )
    return lambda row: any(like(pattern, row.get(c)) for c in CATCH_ALL_COLUMNS)


def parse_where(query: Mapping[str, str]) -> list[dict[str, str]]:
    """``where[i][col|expr|val]`` query parameters as a list of clauses, in index order."""
    clauses: dict[int, dict[str, str]] = {}
    for key, value in query.items():
        match = _WHERE_KEY.match(key)
        if match is not None:
            name = {"column": "col", "value": "val"}.get(match.group(2), match.group(2))
            clauses.setdefault(int(match.group(1)), {})[name] = value
        elif key.startswith("where"):
            raise NotEmulated(f"where: {key!r} is not emulated (only where[i][col|expr|val])")
    return [clauses[i] for i in sorted(clauses)]


def _compared_values(expr: str, val: str) -> frozenset[str]:
    """The lowercased values an ``eq``/``neq`` (one) or ``in``/``notIn`` (comma-separated, entities
    decoded) clause compares its column with, its value already through ``InputHelper::clean``."""
    if expr in ("in", "notIn"):
        return frozenset(v.lower() for v in next(csv.reader([html.unescape(val)], skipinitialspace=False)))
    return frozenset((val.lower(),))


def equal_to(where: list[dict[str, str]], col: str) -> frozenset[str] | None:
    """The lowercased values ``col`` must equal for a row to match every clause (from its first
    ``eq`` or ``in`` clause), None when no clause says: lets a store look rows up by an index
    instead of reading them all. Call after ``contact_filter`` accepted the clauses."""
    for clause in where:
        if clause.get("col") == col and clause.get("expr") in ("eq", "in"):
            return _compared_values(clause["expr"], sanitize_special_chars(clause.get("val", "")))
    return None


def _where_matcher(clause: Mapping[str, str], columns: frozenset[str]) -> Callable[[Row], bool]:
    expr, col = clause.get("expr", ""), clause.get("col", "")
    if not expr:
        raise ValueError('"expr" is missing in the where clause array.')
    if not col:
        raise ValueError('"col" is missing in the where clause array.')
    if expr not in WHERE_EXPRESSIONS:
        raise NotEmulated(f"where: the expression {expr!r} is not emulated")
    if col not in columns:
        raise NotEmulated(f"where: the column {col!r} is not emulated")
    val = sanitize_special_chars(clause.get("val", ""))
    if expr in ("in", "notIn", "eq", "neq"):
        values = _compared_values(expr, val)
        wanted = expr in ("in", "eq")
        return lambda row: (row.get(col) is not None and str(row.get(col)).lower() in values) == wanted
    if expr in ("like", "notLike"):
        wanted = expr == "like"
        return lambda row: row.get(col) is not None and like(val, row.get(col)) == wanted
    if expr in ("isNull", "isNotNull"):
        return lambda row: (row.get(col) is None) == (expr == "isNull")
    return lambda row: (row.get(col) in (None, "")) == (expr == "isEmpty")


def contact_filter(
    search: str, where: list[dict[str, str]], columns: frozenset[str]
) -> Callable[[Row], bool]:
    """One predicate for the ``search`` terms and ``where`` clauses together (AND)."""
    matchers = [_term_matcher(t) for t in parse_search(search)] + [_where_matcher(c, columns) for c in where]
    return lambda row: all(m(row) for m in matchers)
