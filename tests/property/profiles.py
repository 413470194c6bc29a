"""Hypothesis budgets for the property tests, applied to each test as a decorator (``@PROFILE``) so
that they do not change the budget of other tests in the same session.

``ci`` (chosen when ``CI=true``) keeps this package's run bounded; ``dev`` is Hypothesis' default
budget; ``fuzz`` (``make fuzz``) runs many more examples. ``HYPOTHESIS_PROFILE`` picks one by name.
No deadline: examples that go over HTTP to the emulators vary with the machine's load.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
BUDGETS = {"ci": 200, "dev": 200, "fuzz": 5000}


def _selected() -> str:
    name = os.environ.get("HYPOTHESIS_PROFILE", "").strip()
    if name in BUDGETS:
        return name
    return "ci" if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"} else "dev"


SELECTED = _selected()
PROFILE = settings(
    max_examples=BUDGETS[SELECTED],
    deadline=None,
    print_blob=SELECTED != "dev",
    suppress_health_check=_SLOW_DATA,
)
