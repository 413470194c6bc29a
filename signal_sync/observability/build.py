"""What is running: signal-sync's version, the Python and faust-streaming versions under it.

One source for ``signal-sync --version`` and the ``signal_sync_build_info`` metric, read from
the installed distributions' metadata (no import of Faust needed).
"""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTION = "signal-sync"
FAUST_DISTRIBUTION = "faust-streaming"
UNKNOWN = "unknown"


def distribution_version(name: str) -> str:
    """The installed version of a distribution, or ``unknown`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def build_info() -> dict[str, str]:
    """``version``, ``python`` and ``faust`` versions, the labels of ``signal_sync_build_info``."""
    return {
        "version": distribution_version(DISTRIBUTION),
        "python": platform.python_version(),
        "faust": distribution_version(FAUST_DISTRIBUTION),
    }


def version_line() -> str:
    """What ``signal-sync --version`` prints."""
    info = build_info()
    return f"signal-sync {info['version']} (Python {info['python']}, faust-streaming {info['faust']})"
