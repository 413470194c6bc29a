"""librdkafka's own log lines and errors, routed into the process's logs.

Without a ``logger`` librdkafka writes raw ``%3|1700000000.083|FAIL|rdkafka#producer-1| ...``
lines to stderr, one every ~50 ms while a broker is unreachable. Every confluent-kafka client
signal-sync builds gets a ``LibrdkafkaLog`` as its ``logger`` and ``error_cb``
(``streams.clients.client_config``); confluent-kafka hands it the lines whenever the client is
polled. It

* logs each line to the ``signal_sync.librdkafka`` logger, so the worker writes it as a JSON line
  (redacted like every other), with librdkafka's facility and client name as fields;
* logs a line that repeats within ``REPEAT_WINDOW_S`` (digits aside: ports, durations) once, and
  its next occurrence after the window with ``repeated`` = how many were left out;
* logs librdkafka's note that a ``kafka.client_config`` property does not apply to this kind of
  client at debug level: the property is meant for the other kinds;
* remembers the last error, and whether the brokers refused the credentials, for the caller's
  error message (``streams.clients.explain``).

The logger has a ``NullHandler``: where logging is not configured (the one-shot CLI commands),
the lines go nowhere and the command's own error message carries the last one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

LOGGER_NAME = "signal_sync.librdkafka"
REPEAT_WINDOW_S = 60.0
MAX_REMEMBERED = 256
"""Distinct lines remembered for the repeat window; the oldest is forgotten beyond that."""
REFUSAL_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)
REFUSAL = re.compile(
    r"SASL authentication error|SSL handshake failed|ssl/tls alert|certificate verify failed|"
    r"Failed to acquire SASL OAUTHBEARER token",
    re.IGNORECASE,
)
"""What a broker (or the OIDC provider) refusing the client's credentials looks like: retrying
cannot help, so a caller waiting for the brokers stops at once."""
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
_DIGITS = re.compile(r"\d+")
_IGNORED_PROPERTY = re.compile(r"is a \w+ property and will be ignored by this \w+ instance")

log = logging.getLogger(LOGGER_NAME)
log.addHandler(logging.NullHandler())


class LibrdkafkaLog:
    """The ``logger`` and ``error_cb`` of confluent-kafka clients (one per ``client_config`` call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # clients are polled from worker threads too
        self._seen: dict[tuple[str, str], list[float | int]] = {}
        self.last_error: str | None = None
        """librdkafka's text of the most recent failure: an error-level line, an ``error_cb``, or a
        connection the broker closed (a summary such as "1/1 brokers are down" never replaces a
        specific one)."""
        self.authentication_error: str | None = None
        """Set when the brokers (or the OIDC provider) refused the client's credentials."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        """What confluent-kafka calls for each line: ``log(level, "%s [%s] %s", facility, name, text)``."""
        facility, client, text = (str(a) for a in (*args, "", "", "")[:3])
        text = _THREAD.sub("", text)
        if facility == "CONFWARN" and _IGNORED_PROPERTY.search(text):
            level = logging.DEBUG
        if level >= logging.ERROR or (facility == "FAIL" and "Disconnected" in text):
            self._failed(text, refused=bool(REFUSAL.search(text)))
        self._emit(level, facility, client, text)

    def error(self, error: KafkaError) -> None:
        """``error_cb``: errors librdkafka reports instead of logging them (all brokers down, ...)."""
        text = error.str()
        if error.code() != KafkaError._ALL_BROKERS_DOWN or self.last_error is None:
            self._failed(text, refused=error.code() in REFUSAL_CODES or bool(REFUSAL.search(text)))
        level = logging.CRITICAL if error.fatal() else logging.ERROR
        self._emit(level, "ERROR", "", f"{error.name()}: {text}")

    def _failed(self, text: str, refused: bool) -> None:
        self.last_error = text
        if refused:
            self.authentication_error = text

    def _emit(self, level: int, facility: str, client: str, text: str) -> None:
        if not log.isEnabledFor(level):
            return
        key = (facility, _DIGITS.sub("#", text))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < REPEAT_WINDOW_S:
                seen[1] += 1
                return
            repeated = int(seen[1]) if seen is not None else 0
            self._seen.pop(key, None)
            self._seen[key] = [now, 0]
            if len(self._seen) > MAX_REMEMBERED:
                del self._seen[next(iter(self._seen))]
        extra: dict[str, object] = {"facility": facility, "client": client}
        if repeated:
            extra["repeated"] = repeated
        log.log(level, "%s", text, extra=extra)
