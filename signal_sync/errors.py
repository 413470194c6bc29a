"""The project's exception tree, in one place so callers can catch by kind.

    SignalSyncError
    ├── ConfigError        bad or missing configuration; the message names the field
    ├── InvalidEventError  an input record that is not a valid event (becomes an ``invalid`` outcome)
    └── DeliveryError      a destination could not be reached or answered unusably

The CLI catches ``SignalSyncError`` and prints ``ErrorType: message`` with a non-zero exit.
"""

from __future__ import annotations


class SignalSyncError(Exception):
    """Base class of every error signal-sync raises on purpose."""


class ConfigError(SignalSyncError):
    """Configuration is unusable; raised at start so a bad deploy fails fast."""


class InvalidEventError(SignalSyncError):
    """An input record cannot be read as an event; it is reported, never retried."""


class DeliveryError(SignalSyncError):
    """A request to a destination failed in a way the caller must classify."""
