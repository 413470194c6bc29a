"""Problems found while validating one config block, raised as one pydantic ``ValidationError``:
each keeps its own location, so the start-up error names every field at fault."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Problem = tuple[tuple[str | int, ...], str]
"""Where (a path below the validated model) and what is wrong there."""


def problems_error(title: str, kind: str, problems: Sequence[Problem]) -> ValidationError:
    """One error carrying every problem under ``kind`` (the pydantic error type)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(kind, "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in problems
        ],
    )
