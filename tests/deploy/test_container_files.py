"""Offline checks of the container files: Dockerfile, docker-compose.kafka.yml, requirements.lock.

There is no Docker engine on CI, so nothing here builds or runs a container. Instead:

* ``docker-compose.kafka.yml`` is validated against the Compose Specification JSON schema.
  The schema is not committed: the ``docker-compose==1.29.2`` wheel on PyPI ships it as
  ``compose/config/compose_spec.json``, so the first run fetches that wheel with
  ``pip download`` (hash-pinned) into ``.cache/compose-spec/`` and reads the JSON out of
  it. If it cannot be fetched, the schema test fails when ``CI=true`` and skips otherwise.
* The compose services are checked against what the worker really expects: the mounted
  ``deploy/compose/config.yaml`` is loaded through ``signal_sync.config.load_settings``
  with the worker's compose environment, and its Kafka address, topics, base URLs and
  credentials are compared with the broker, topic-creation and emulator services.
* The Dockerfile is parsed (a small parser below, no extra dependency) and its stages,
  user, healthcheck, labels and pip flags are checked.
* ``requirements.lock`` must pin, with hashes, every runtime dependency in pyproject and
  every third-party module ``signal_sync`` imports (the image has nothing else).
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft201909Validator, FormatChecker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from signal_sync.config import (
    MailgunIntegration,
    MauticIntegration,
    Settings,
    WorkerSettings,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.kafka.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK_FILE = REPO / "requirements.lock"
PYPROJECT = REPO / "pyproject.toml"

# Where the Compose Specification JSON schema comes from (see the module docstring).
SCHEMA_REQUIREMENT = "docker-compose==1.29.2"
SCHEMA_WHEEL = "docker_compose-1.29.2-py2.py3-none-any.whl"
SCHEMA_WHEEL_SHA256 = "8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809"
SCHEMA_MEMBER = "compose/config/compose_spec.json"
SCHEMA_CACHE = REPO / ".cache" / "compose-spec"

TOPIC_PARTITIONS = 12
KAFKA_IMAGE = re.compile(r"^apache/kafka:4\.1\.\d+$")
NON_ROOT_UID = 10001
# A host environment with the demo's variables overridden, to prove the values flow from
# the compose file into both the emulators and the worker (and are not hard-coded).
HOST_OVERRIDES = {"MAUTIC_PASSWORD": "pw-from-host", "MAILGUN_API_KEY": "key-from-host"}


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# --------------------------------------------------------------------------- schema fetch


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch_schema_wheel() -> Path:
    """The docker-compose wheel in the cache dir, downloaded (hash-checked by pip) if absent."""
    wheel = SCHEMA_CACHE / SCHEMA_WHEEL
    if wheel.is_file() and _sha256(wheel) == SCHEMA_WHEEL_SHA256:
        return wheel
    SCHEMA_CACHE.mkdir(parents=True, exist_ok=True)
    requirements = SCHEMA_CACHE / "requirements.txt"
    requirements.write_text(f"{SCHEMA_REQUIREMENT} --hash=sha256:{SCHEMA_WHEEL_SHA256}\n", encoding="utf-8")
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--require-hashes", "--timeout", "30", "--retries", "2",
        "--dest", str(SCHEMA_CACHE), "-r", str(requirements),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError("pip download timed out after 300 s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip download {SCHEMA_REQUIREMENT} failed: {' | '.join(detail)}")
    if not wheel.is_file() or _sha256(wheel) != SCHEMA_WHEEL_SHA256:
        raise RuntimeError(f"pip download did not leave {SCHEMA_WHEEL} with the expected sha256")
    return wheel


@pytest.fixture(scope="session")
def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema, from the cached docker-compose wheel."""
    try:
        with zipfile.ZipFile(_fetch_schema_wheel()) as archive:
            schema = json.loads(archive.read(SCHEMA_MEMBER))
    except (RuntimeError, OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        reason = f"Compose Specification schema unavailable ({type(exc).__name__}: {exc})"
        if _is_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    assert schema.get("title") == "Compose Specification", "not the compose-spec schema"
    return schema


# --------------------------------------------------------------------------- compose helpers

_COMPOSE_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def compose_interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``?``."""
    if isinstance(value, dict):
        return {key: compose_interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [compose_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op and op.endswith("-"):
            return arg if unset else str(current)
        if op and op.endswith("?"):
            if unset:
                raise AssertionError(f"compose would refuse to start: ${{{name}}} is required ({arg})")
            return str(current)
        return "" if current is None else current

    return _COMPOSE_VAR.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as Compose sees it: YAML (anchors and merge keys resolved), then interpolated."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return compose_interpolate(raw, {} if env is None else env)


def as_env(environment: Any) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=VALUE`` list) as a dict."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): "" if v is None else str(v) for k, v in environment.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)


def as_argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def service_argv(service: dict[str, Any], dockerfile: Dockerfile) -> list[str]:
    """What the container runs: entrypoint + command, falling back to the image's as Docker does.

    Only services built from our Dockerfile have a known image entrypoint; for any other
    image (apache/kafka) the result is just what the compose file sets.
    """
    if "entrypoint" in service:  # an entrypoint override also drops the image's CMD
        return as_argv(service["entrypoint"]) + as_argv(service.get("command"))
    if "build" not in service:
        return as_argv(service.get("command"))
    command = service["command"] if "command" in service else dockerfile.final.exec_form("CMD")
    return dockerfile.final.exec_form("ENTRYPOINT") + as_argv(command)


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` (the last one wins, like Click)."""
    found = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def option_values(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def network_owner(services: dict[str, Any], name: str) -> str:
    """The service whose network namespace ``name`` runs in (following ``network_mode: service:X``)."""
    seen: list[str] = []
    while True:
        assert name not in seen, f"network_mode cycle: {seen + [name]}"
        seen.append(name)
        mode = services[name].get("network_mode", "")
        if not mode.startswith("service:"):
            assert mode in ("", "bridge"), f"{name}: network_mode {mode!r} cannot reach the compose network"
            return name
        name = mode.split(":", 1)[1]
        assert name in services, f"network_mode names an unknown service {name!r}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck is disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    return test if isinstance(test, str) else " ".join(test)


def emulator_services(services: dict[str, Any], dockerfile: Dockerfile) -> dict[str, tuple[str, list[str]]]:
    """kind (mautic|mailgun) -> (service name, argv) of each ``signal-sync emulator KIND`` service."""
    found: dict[str, tuple[str, list[str]]] = {}
    for name, service in services.items():
        argv = service_argv(service, dockerfile)
        if argv[:2] == ["signal-sync", "emulator"]:
            assert argv[2] not in found, f"two {argv[2]} emulators: {found[argv[2]][0]} and {name}"
            found[argv[2]] = (name, argv)
    return found


def worker_name(services: dict[str, Any], dockerfile: Dockerfile) -> str:
    names = [n for n, s in services.items() if service_argv(s, dockerfile)[:2] == ["signal-sync", "worker"]]
    assert len(names) == 1, f"expected one worker service, found {names}"
    return names[0]


def mounted_file(service: dict[str, Any], target: str) -> Path:
    """The host file bind-mounted at ``target`` (short or long volume syntax)."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mount_target = rest.split(":", 1)[0]
        else:
            if volume.get("type") != "bind":
                continue
            source, mount_target = volume["source"], volume["target"]
        if mount_target == target:
            assert source.startswith((".", "/")), f"{target} is a named volume, not a file from the repo"
            return (COMPOSE_FILE.parent / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture
def clean_signal_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``SIGNAL_SYNC_*`` override from the test process may leak into ``load_settings``."""
    for key in list(os.environ):
        if key.startswith("SIGNAL_SYNC_"):
            monkeypatch.delenv(key)
    return monkeypatch


def worker_settings(
    compose: dict[str, Any], dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, dict[str, str], Path]:
    """Load the worker's mounted config exactly as the container would: its env, its -c path."""
    services = compose["services"]
    worker = services[worker_name(services, dockerfile)]
    argv = service_argv(worker, dockerfile)
    config_path = option(argv, "-c") or option(argv, "--config")
    assert config_path, f"worker command has no -c: {argv}"
    host_config = mounted_file(worker, config_path)
    env = as_env(worker.get("environment"))
    for key, value in env.items():  # SIGNAL_SYNC_<SECTION>__<FIELD> overrides, as in the container
        if key.startswith("SIGNAL_SYNC_"):
            monkeypatch.setenv(key, value)
    return load_settings(host_config, environ=env), env, host_config


# --------------------------------------------------------------------------- Dockerfile parser


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    value: str
    line: int


@dataclass
class Stage:
    base: str  # FROM image after global ARG substitution
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def exec_form(self, keyword: str) -> list[str]:
        instruction = self.last(keyword)
        if instruction is None:
            return []
        assert instruction.value.startswith("["), f"{keyword} must use the exec (JSON) form"
        return json.loads(instruction.value)

    def key_values(self, keyword: str) -> dict[str, str]:
        """``ENV``/``LABEL``/``ARG`` ``key=value`` pairs (quotes removed), later ones winning."""
        pairs: dict[str, str] = {}
        for instruction in self.all(keyword):
            for token in shlex.split(instruction.value):
                key, sep, value = token.partition("=")
                pairs[key] = value if sep else pairs.get(key, "")
        return pairs


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        instructions = list(_logical_lines(text))
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for instruction in instructions:
            if instruction.keyword == "FROM":
                words = instruction.value.split()
                words = [w for w in words if not w.startswith("--platform")]
                base = _substitute(words[0], global_args)
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                stages.append(Stage(base=base, name=name, instructions=[]))
            elif not stages:
                assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG may precede FROM"
                key, _, value = instruction.value.partition("=")
                global_args[key.strip()] = value.strip().strip("\"'")
            else:
                stages[-1].instructions.append(instruction)
        return cls(global_args=global_args, stages=stages)


def _substitute(word: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), ""), word)


def _logical_lines(text: str) -> Iterator[Instruction]:
    """Instructions with ``\\`` continuations joined and comment lines dropped (default escape)."""
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments, parser directives and blank lines, also inside a continuation
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        line = " ".join(p for p in parts if p)
        parts = []
        keyword, _, value = line.partition(" ")
        yield Instruction(keyword=keyword.upper(), value=value.strip(), line=start)
    assert not parts, "Dockerfile ends inside a line continuation"


# --------------------------------------------------------------------------- lock parser


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """``canonical name -> (version, [sha256 hashes])`` from a pip-compile ``--generate-hashes`` file."""
    joined = re.sub(r"\\\n", " ", text)
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"unexpected option line in the lock: {line!r}"
        spec, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", spec)
        assert match, f"lock entry is not pinned with ==: {spec!r}"
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return entries


# =========================================================================== compose tests


def test_compose_file_is_valid_against_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    checker = FormatChecker()

    @checker.checks("duration")
    def _duration(value: object) -> bool:
        return not isinstance(value, str) or bool(re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value))

    @checker.checks("ports")
    def _ports(value: object) -> bool:
        pattern = r"((\[?[0-9a-fA-F:.]+\]?):)?((\d+(-\d+)?):)?\d+(-\d+)?(/(tcp|udp|sctp))?"
        return not isinstance(value, str) or bool(re.fullmatch(pattern, value))

    # The schema declares draft 2019-09 (with a non-canonical $schema URI jsonschema does not know).
    Draft201909Validator.check_schema(compose_schema)
    validator = Draft201909Validator(compose_schema, format_checker=checker)
    for env in ({}, HOST_OVERRIDES):
        errors = sorted(
            validator.iter_errors(load_compose(env)), key=lambda e: [str(p) for p in e.absolute_path]
        )
        messages = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
        assert not messages, "docker-compose.kafka.yml breaks the Compose Specification:\n" + "\n".join(
            messages
        )


def test_compose_has_the_expected_services(compose: dict[str, Any], dockerfile: Dockerfile) -> None:
    services = compose["services"]
    assert KAFKA_IMAGE.match(services["kafka"]["image"]), services["kafka"]["image"]
    assert set(emulator_services(services, dockerfile)) == {"mautic", "mailgun"}
    worker_name(services, dockerfile)
    for name, service in services.items():
        if "build" not in service:
            continue
        build = service["build"]
        context = COMPOSE_FILE.parent / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile_name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile_name).resolve() == DOCKERFILE, f"{name}: not built from ./Dockerfile"
        if isinstance(build, dict) and "target" in build:
            assert build["target"] == dockerfile.final.name, f"{name}: builds {build['target']!r}"


def test_every_depends_on_uses_a_condition_that_can_be_met(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    services = compose["services"]
    own_image = {name for name, s in services.items() if "build" in s}
    for name, service in services.items():
        depends_on = service.get("depends_on")
        if depends_on is None:
            continue
        assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form with a condition"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            condition = (spec or {}).get("condition")
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {target}: no valid condition ({condition!r})"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                has_image_check = target in own_image and dockerfile.final.last("HEALTHCHECK") is not None
                assert not check.get("disable"), f"{name} waits for {target} to be healthy, its check is off"
                assert check.get("test") or has_image_check, f"{target} has no healthcheck to become healthy"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is one-shot: restart 'no'"


def test_no_dependency_cycles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    edges = {
        name: set(s.get("depends_on") or ())  # the names, in the list or the mapping form
        | (
            {s["network_mode"].split(":", 1)[1]}
            if s.get("network_mode", "").startswith("service:")
            else set()
        )
        for name, s in services.items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join(path + (name,))}"
        if name in done:
            return
        for target in edges[name]:
            visit(target, path + (name,))
        done.add(name)

    for name in services:
        visit(name, ())


def test_healthchecks_on_kafka_emulators_and_worker(
    compose: dict[str, Any], dockerfile: Dockerfile, clean_signal_env: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    kafka_check = healthcheck_text(services["kafka"])
    assert "kafka-broker-api-versions.sh" in kafka_check or "kafka-topics.sh" in kafka_check, kafka_check
    for name, argv in emulator_services(services, dockerfile).values():
        text = healthcheck_text(services[name])
        assert f"127.0.0.1:{option(argv, '--port')}/_sandbox/health" in text, f"{name}: {text}"
        assert "curl" not in text and "wget" not in text, f"{name}: the image has neither curl nor wget"
    settings, _, _ = worker_settings(compose, dockerfile, clean_signal_env)
    text = healthcheck_text(services[worker_name(services, dockerfile)])
    assert f"127.0.0.1:{settings.worker.web_port}/health" in text, text


def test_worker_config_matches_the_compose_services(
    compose: dict[str, Any], dockerfile: Dockerfile, clean_signal_env: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    settings, _, host_config = worker_settings(compose, dockerfile, clean_signal_env)
    assert host_config == (REPO / "deploy" / "compose" / "config.yaml").resolve()
    worker = worker_name(services, dockerfile)

    # Kafka: the in-network listener, advertised under the name the worker uses.
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    kafka_env = as_env(services["kafka"]["environment"])
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT_HOST://localhost:9094" in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert 9094 in published_container_ports(services["kafka"])
    assert network_owner(services, worker) != "kafka"  # reaches kafka:9092 over the compose network

    # Web server: reachable from outside the container, and published by the netns owner.
    assert settings.worker.web_bind == "0.0.0.0"
    assert settings.worker.web_port in published_container_ports(services[network_owner(services, worker)])
    volume_targets = [
        v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[worker]["volumes"]
    ]
    assert str(settings.worker.state_dir) in volume_targets, "state_dir is not on a volume"

    # Each integration points at its emulator: loopback (the only plain-http host the config
    # accepts) in the emulator's network namespace, on the emulator's port.
    emulators = emulator_services(services, dockerfile)
    kinds = {type(i): i for i in settings.integrations}
    assert set(kinds) == {MauticIntegration, MailgunIntegration}
    for integration in settings.integrations:
        name, argv = emulators[integration.type]
        url = urlsplit(integration.base_url)
        assert url.hostname is not None and is_loopback(url.hostname), integration.base_url
        assert str(url.port) == option(argv, "--port"), f"{integration.id} -> {integration.base_url}, {argv}"
        assert network_owner(services, name) == network_owner(services, worker), (
            f"{integration.id}: {name} is not in the worker's network namespace, 127.0.0.1 misses it"
        )
        assert option(argv, "--host") == "0.0.0.0", f"{name} must listen on 0.0.0.0 for its published port"
        assert int(option(argv, "--port") or 0) in published_container_ports(
            services[network_owner(services, name)]
        )


@pytest.mark.parametrize("host_env", [{}, HOST_OVERRIDES], ids=["defaults", "host-overrides"])
def test_worker_credentials_equal_the_emulators(
    host_env: dict[str, str], dockerfile: Dockerfile, clean_signal_env: pytest.MonkeyPatch
) -> None:
    compose = load_compose(host_env)
    services = compose["services"]
    settings, _, host_config = worker_settings(compose, dockerfile, clean_signal_env)
    emulators = emulator_services(services, dockerfile)

    mautic_name, mautic_argv = emulators["mautic"]
    mautic_env = as_env(services[mautic_name].get("environment"))
    mautic_password = option(mautic_argv, "--password", mautic_env.get("MAUTIC_PASSWORD"))
    mautic_user = option(mautic_argv, "--user", "signal")
    mailgun_name, mailgun_argv = emulators["mailgun"]
    mailgun_key = option(
        mailgun_argv, "--api-key", as_env(services[mailgun_name].get("environment")).get("MAILGUN_API_KEY")
    )
    lists = option_values(mailgun_argv, "--list") or ["newsletter@mg.example.com"]

    for integration in settings.integrations:
        user, password = integration.credentials()
        if isinstance(integration, MauticIntegration):
            assert (user, password) == (mautic_user, mautic_password)
        else:
            assert password == mailgun_key
            assert integration.list_address in lists
    if host_env:
        assert mautic_password == host_env["MAUTIC_PASSWORD"]
        assert mailgun_key == host_env["MAILGUN_API_KEY"]

    # Secrets come from the environment through the config, never written into it.
    raw = yaml.safe_load(host_config.read_text(encoding="utf-8"))
    for integration in raw["integrations"]:
        for field in ("api_password", "api_key"):
            if field in integration:
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", integration[field]), (
                    f"{integration['id']}.{field} must be an ${{ENV}} reference, not a literal"
                )


def test_topic_creation_matches_the_config(
    compose: dict[str, Any], dockerfile: Dockerfile, clean_signal_env: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    settings, _, _ = worker_settings(compose, dockerfile, clean_signal_env)
    creators = [n for n, s in services.items() if "kafka-topics.sh" in " ".join(service_argv(s, dockerfile))]
    assert len(creators) == 1, f"expected one topic-creation service, found {creators}"
    creator = creators[0]
    script = "\n".join(service_argv(services[creator], dockerfile))
    created: dict[str, int] = {}
    for line in script.splitlines():
        if "kafka-topics.sh" not in line:
            continue
        argv = shlex.split(line)
        assert "--create" in argv, line
        assert option(argv, "--bootstrap-server") == settings.kafka.bootstrap_servers, line
        topic, partitions = option(argv, "--topic"), option(argv, "--partitions")
        assert topic and partitions, line
        created[topic] = int(partitions)
        assert int(option(argv, "--replication-factor") or 1) <= 1, "single-node broker"
    wanted = {settings.kafka.source_topic, settings.kafka.deliveries_topic, settings.kafka.dead_letter_topic}
    assert set(created) == wanted
    assert created == dict.fromkeys(wanted, TOPIC_PARTITIONS)
    assert services[creator]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker = services[worker_name(services, dockerfile)]
    assert worker["depends_on"][creator]["condition"] == "service_completed_successfully"


# =========================================================================== Dockerfile tests


def test_dockerfile_is_multi_stage_on_one_slim_python_313_base(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    builder, final = dockerfile.stage("builder"), dockerfile.final
    assert final is not builder
    assert final.base == builder.base, "the final stage must use the builder's base (same Python ABI)"
    assert re.fullmatch(r"python:3\.13(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", final.base), final.base
    lock_header = LOCK_FILE.read_text(encoding="utf-8")
    assert "with Python 3.13" in lock_header, "requirements.lock was not compiled for the image's Python"


def test_final_stage_copies_only_the_venv_and_has_no_compilers(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage copies nothing"
    for instruction in copies:
        words = instruction.value.split()
        assert words[0] == "--from=builder", f"line {instruction.line}: final stage copies from the context"
        assert words[1:] == ["/opt/venv", "/opt/venv"], f"line {instruction.line}: copies more than the venv"
    compilers = re.compile(r"\b(gcc|g\+\+|clang|build-essential|cc|make|python3?-dev|libc6?-dev)\b")
    for instruction in final.all("RUN"):
        assert not compilers.search(instruction.value), (
            f"line {instruction.line}: a compiler in the final stage"
        )


def test_final_stage_runs_as_a_fixed_non_root_user(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    user = final.last("USER")
    assert user is not None, "no USER in the final stage"
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit() and int(uid) == NON_ROOT_UID, f"USER must be the numeric uid {NON_ROOT_UID}"
    assert not gid or (gid.isdigit() and int(gid) != 0), "non-root group"
    assert user.line < final.last("ENTRYPOINT").line  # type: ignore[union-attr]
    volumes = [v for i in final.all("VOLUME") for v in json.loads(i.value)]
    assert volumes, "no writable state volume"
    runs = " ".join(i.value for i in final.all("RUN"))
    owner = re.escape(f"{uid}:{gid}" if gid else uid)
    for volume in volumes:
        assert re.search(rf"chown (-R )?{owner} {re.escape(volume)}(\s|$)", runs), (
            f"{volume} is not owned by the runtime user"
        )


def test_healthcheck_uses_python_stdlib_against_health(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None and healthcheck.value.upper() != "NONE"
    command = healthcheck.value.split("CMD", 1)[1].strip()
    argv = json.loads(command)
    assert argv[0] in ("python", "python3", "/opt/venv/bin/python"), argv
    assert "urllib.request" in argv[-1]
    assert "curl" not in command and "wget" not in command
    assert "HEALTHCHECK_URL" in argv[-1], "the check reads its URL from ENV HEALTHCHECK_URL"
    url = urlsplit(final.key_values("ENV").get("HEALTHCHECK_URL", ""))
    assert url.hostname == "127.0.0.1" and url.path == "/health", url.geturl()
    assert url.port == WorkerSettings.model_fields["web_port"].default, "the worker's default web_port"


def test_oci_labels_and_python_env(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    labels = final.key_values("LABEL")
    args = final.key_values("ARG")
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for key in ("title", "description", "source", "licenses", "version"):
        value = _substitute(labels.get(f"org.opencontainers.image.{key}", ""), args)
        assert value, f"label org.opencontainers.image.{key} missing or empty"
    assert _substitute(labels["org.opencontainers.image.version"], args) == project["version"]
    license_ = project["license"]  # PEP 639 SPDX string, or the older {text = ...} table
    assert labels["org.opencontainers.image.licenses"] == (
        license_ if isinstance(license_, str) else license_["text"]
    )
    assert labels["org.opencontainers.image.title"] == project["name"]
    env = final.key_values("ENV")
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_pip_installs_are_hash_checked(dockerfile: Dockerfile) -> None:
    installs = [
        (stage.name, i)
        for stage in dockerfile.stages
        for i in stage.all("RUN")
        if re.search(r"\bpip3? install\b", i.value)
    ]
    assert installs
    locked = False
    for _stage, instruction in installs:
        for command in re.split(r"&&|;", instruction.value):
            if not re.search(r"\bpip3? install\b", command):
                continue
            argv = shlex.split(command)
            if "-r" in argv or "--requirement" in argv:
                assert "--require-hashes" in argv, f"line {instruction.line}: {command.strip()}"
                assert option(argv, "-r") == LOCK_FILE.name
                locked = True
            else:  # the project's own wheel: everything it needs came from the lock
                assert "--no-deps" in argv, (
                    f"line {instruction.line}: resolves unpinned deps: {command.strip()}"
                )
    assert locked, "no pip install -r requirements.lock"
    copied = [i.value.split() for i in dockerfile.stage("builder").all("COPY")]
    assert any(LOCK_FILE.name in words for words in copied)


def test_entrypoint_and_cmd(dockerfile: Dockerfile, compose: dict[str, Any]) -> None:
    final = dockerfile.final
    assert final.exec_form("ENTRYPOINT") == ["signal-sync"]
    cmd = final.exec_form("CMD")
    assert cmd == ["worker", "-c", "/etc/signal-sync/config.yaml"]
    worker = compose["services"][worker_name(compose["services"], dockerfile)]
    mounted_file(worker, cmd[2])  # the compose worker mounts its config where the image looks


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a pattern also matches parents."""
    ignored = False
    parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = re.escape(body).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", r"[\1]", regex)
        if any(re.fullmatch(regex, candidate) for candidate in parents):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_but_complete(dockerfile: Dockerfile) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".git/HEAD", ".venv/bin/python", ".cache/kafka/x.jar", "tests/conftest.py", "bench/x.py"):
        assert _ignored(path, patterns), f"{path} would be sent to the daemon"
    needed: list[str] = []
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY"):
            words = instruction.value.split()
            if any(w.startswith("--from") for w in words):
                continue
            for source in words[:-1]:
                matches = sorted(REPO.glob(source))
                assert matches or any(ch in source for ch in "*?["), f"COPY {source}: no such file"
                for match in matches:
                    files = [p for p in match.rglob("*") if p.is_file()] if match.is_dir() else [match]
                    needed.extend(str(p.relative_to(REPO)) for p in files if "__pycache__" not in p.parts)
    assert needed
    for path in needed:
        assert not _ignored(path, patterns), f"{path} is copied by the Dockerfile but .dockerignore drops it"


# =========================================================================== lock tests


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lock = parse_lock(LOCK_FILE.read_text(encoding="utf-8"))
    assert lock, "requirements.lock is empty"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    image_env = {"python_version": "3.13", "python_full_version": "3.13.0", "sys_platform": "linux",
                 "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
                 "platform_python_implementation": "CPython", "platform_machine": "x86_64"}  # fmt: skip
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(image_env):
            continue
        name = canonicalize_name(requirement.name)
        assert name in lock, f"runtime dependency {requirement} is not in requirements.lock"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject wants {requirement.specifier}"
        )
    test_only = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]}
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not (test_only - runtime) & set(lock), "test tools leaked into the runtime lock"


def _third_party_imports(package: Path) -> dict[str, str]:
    """Top-level third-party modules imported by the package: ``module -> first file:line``.

    Imports guarded by ``try: ... except ImportError`` (optional extras) or ``if TYPE_CHECKING:``
    are left out.
    """
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        optional: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers
            ):
                optional.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                optional.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("signal_sync", "__future__"):
                    found.setdefault(top, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_lock_covers_every_module_the_package_imports() -> None:
    """The image has only what the lock pins: every third-party import must come from it."""
    lock = parse_lock(LOCK_FILE.read_text(encoding="utf-8"))
    providers = packages_distributions()
    missing = []
    for module, where in sorted(_third_party_imports(REPO / "signal_sync").items()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            missing.append(f"{module} ({where}): not installed here, cannot tell its distribution")
        elif not dists & set(lock):
            missing.append(f"{module} ({where}): {'/'.join(sorted(dists))} is not in requirements.lock")
    assert not missing, (
        "the image would fail to import these (add them to pyproject's dependencies and re-run the "
        "pip-compile command in requirements.lock's header):\n" + "\n".join(missing)
    )
