"""A real Schema Registry for tests, without Docker: Apicurio Registry with its Confluent API.

Why: decoding Confluent-framed records (magic byte 0, 4-byte schema id, payload) can only be
trusted against a registry that really serves the Confluent Schema Registry REST API, and CI
machines here have Java and Maven but no Docker. Apicurio Registry serves that API under
``/apis/ccompat/v7`` and publishes its release build on Maven Central (the ``all`` tar.gz of
``io.apicurio:apicurio-registry-app``, a Quarkus fast-jar), so Maven fetches and unpacks it
(pinned by ``dev/apicurio/pom.xml``) into ``.cache/schema-registry/<version>/app`` and we run
``java -jar quarkus-run.jar`` on 127.0.0.1 with in-memory (H2) storage. Authentication is off
unless asked for: HTTP Basic (``basic_auth``, Quarkus' embedded users) and/or bearer tokens
(``token_public_key``: RS256 JWTs signed by the matching private key, checked by Quarkus OIDC
against that key, so no identity provider runs). Its classes target Java 21: a Java 21+ is
looked for beside the default one (``find_java``).

"Ready" means the management port reports ``/health/ready`` UP *and* the Confluent API answers
``GET /subjects``, which reads the storage, not merely that a port accepts connections.

Importable (``LocalSchemaRegistry``, ``fetch_registry``, ``find_java``) and runnable::

    python dev/schema_registry.py fetch                  # download + unpack (idempotent)
    python dev/schema_registry.py start [--port 8081]    # background registry; prints its URL
    python dev/schema_registry.py status
    python dev/schema_registry.py stop

Only the standard library is used (plus dev/background_jvm.py, which runs the JVM), so this works
from a bare venv.
"""

from __future__ import annotations

import argparse
import base64
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from background_jvm import HOST, BackgroundJvm, ServerCli, fetch_with_maven

APICURIO_VERSION = "3.3.3"  # keep in sync with <apicurio.version> in dev/apicurio/pom.xml
MIN_JAVA = 21  # Apicurio Registry 3.3 is compiled for Java 21 (class file version 65)
REPO_ROOT = Path(__file__).resolve().parents[1]
POM_PATH = REPO_ROOT / "dev" / "apicurio" / "pom.xml"
CACHE_ROOT = REPO_ROOT / ".cache" / "schema-registry"
DEFAULT_APP_DIR = CACHE_ROOT / APICURIO_VERSION / "app"
DEMO_DATA_DIR = CACHE_ROOT / "run"
DEMO_PORT = 8081
CCOMPAT_PATH = "/apis/ccompat/v7"

_PID_FILE_NAME = "registry.pid"
_PORTS_FILE_NAME = "ports.json"
_RUNNER = "quarkus-run.jar"
_JAVA_ENV = "SCHEMA_REGISTRY_JAVA"


class SchemaRegistryError(RuntimeError):
    """The local registry could not be fetched, started or stopped."""


# --------------------------------------------------------------------------- java


def _java_major(java: str) -> int | None:
    """The feature release of ``java`` (``17`` for 17.0.15, ``8`` for 1.8.0), or None if it does not run."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if proc.returncode != 0 or match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _java_override() -> str | None:
    """``$SCHEMA_REGISTRY_JAVA`` as a java binary (it may name a JDK directory), or None."""
    override = os.environ.get(_JAVA_ENV, "").strip()
    if not override:
        return None
    return str(Path(override) / "bin" / "java") if Path(override).is_dir() else override


def _java_candidates() -> list[str]:
    """``$SCHEMA_REGISTRY_JAVA``, ``$JAVA_HOME``, ``java`` on PATH, then every JDK in /usr/lib/jvm."""
    override = _java_override()
    found: list[str] = [override] if override else []
    if os.environ.get("JAVA_HOME"):
        found.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    found.extend(sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True))
    return list(dict.fromkeys(found))


@functools.cache
def find_java(min_major: int = MIN_JAVA) -> str:
    """The first Java ``>= min_major`` of ``_java_candidates()``; ``$SCHEMA_REGISTRY_JAVA`` must be one."""
    seen: list[str] = []
    for java in _java_candidates():
        major = _java_major(java)
        seen.append(f"{java} ({major if major is not None else 'does not run'})")
        if major is not None and major >= min_major:
            return java
        if java == _java_override():
            raise SchemaRegistryError(
                f"${_JAVA_ENV}={java} is Java {major}; Apicurio Registry needs {min_major}+"
            )
    raise SchemaRegistryError(
        f"Apicurio Registry {APICURIO_VERSION} needs Java {min_major}+ and none was found "
        f"(looked at: {', '.join(seen) or 'nothing'}); install one or set ${_JAVA_ENV} to its java binary."
    )


# --------------------------------------------------------------------------- fetch


def fetch_registry(app_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Unpack Apicurio's release build into ``app_dir`` (holding ``quarkus-run.jar``) and return it.

    Idempotent and safe to call concurrently (see ``background_jvm.fetch_with_maven``): an
    interrupted fetch, or a changed pom, is redone from scratch. Maven keeps the archive in its
    local repository, so a wiped ``.cache/`` is refilled without downloading again.
    """
    find_java()  # an unpacked registry is useless without a Java that runs it; fail here, not at start()
    return fetch_with_maven(
        (app_dir or DEFAULT_APP_DIR).resolve(),
        pom=POM_PATH,
        goal="dependency:unpack-dependencies",
        # Unpack even when Maven's markers say this version was unpacked before (elsewhere).
        options=["-DoverWriteReleases=true"],
        complete=lambda app: (app / _RUNNER).is_file(),
        what=f"Apicurio Registry {APICURIO_VERSION}",
        mvn_hint="the local Schema Registry is fetched with Maven",
        error=SchemaRegistryError,
        quiet=quiet,
    )


# --------------------------------------------------------------------------- config


def _properties(
    data_dir: Path,
    port: int,
    management_port: int,
    basic_auth: tuple[str, str] | None,
    token_public_key: str | None,
    token_issuer: str,
) -> str:
    """Runtime overrides of Apicurio's packaged application.properties (Quarkus reads
    ``config/application.properties`` under the working directory with a higher ordinal)."""
    props = {
        "quarkus.http.host": HOST,
        "quarkus.http.port": str(port),
        # Health and metrics live on Quarkus' management interface (its default port 9000 is
        # often taken); readiness is polled there.
        "quarkus.management.host": HOST,
        "quarkus.management.port": str(management_port),
        # Storage stays Apicurio's default, in-memory H2; its scratch files go to data_dir, not /tmp.
        "apicurio.storage.snapshot.location": str(data_dir),
        "apicurio.import.work-dir": str(data_dir),
    }
    if basic_auth is not None:
        user, password = basic_auth
        props.update(
            {
                "quarkus.http.auth.basic": "true",
                "quarkus.security.users.embedded.enabled": "true",
                "quarkus.security.users.embedded.plain-text": "true",
                f"quarkus.security.users.embedded.users.{user}": password,
                f"quarkus.security.users.embedded.roles.{user}": "sr-admin",
            }
        )
    if token_public_key is not None:
        # quarkus.oidc.public-key takes the base64 body of a PEM public key, without its armour.
        key_body = "".join(line for line in token_public_key.strip().splitlines() if "-----" not in line)
        props.update(
            {
                "quarkus.oidc.tenant-enabled": "true",
                "quarkus.oidc.public-key": key_body,
                "quarkus.oidc.token.issuer": token_issuer,
            }
        )
    header = "# Written by dev/schema_registry.py; regenerated on every start.\n"
    return header + "".join(f"{k}={v}\n" for k, v in props.items())


def _get(url: str, auth_header: str | None, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if auth_header:
        request.add_header("Authorization", auth_header)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------- registry


class LocalSchemaRegistry(BackgroundJvm):
    """One Apicurio Registry process on 127.0.0.1; ``url`` is its Confluent-compatible API.

    Storage is in memory: a ``stop()`` forgets every schema, and ``start()`` after it serves
    an empty registry on the same ports. ``basic_auth`` (user, password) and ``token_public_key``
    (a PEM RSA public key; tokens need ``iss`` = ``token_issuer`` and ``aud`` = ``registry-api``)
    turn authentication on; either may be combined with the other.
    """

    name = "Apicurio Registry"
    version = APICURIO_VERSION
    noun = "registry"
    error = SchemaRegistryError
    stdout_log_name = server_log_name = "registry.log"  # Quarkus' console log is its only log
    not_ready_errors = (OSError, ValueError, SchemaRegistryError)

    def __init__(
        self,
        app_dir: Path | None = None,
        *,
        heap_max_mb: int = 384,
        basic_auth: tuple[str, str] | None = None,
        token_public_key: str | None = None,
        token_issuer: str = "local-schema-registry",
        watchdog: bool = True,
        detach: bool = False,
    ) -> None:
        super().__init__(watchdog=watchdog, detach=detach)
        self.app_dir = app_dir
        self.heap_max_mb = heap_max_mb
        self.basic_auth = basic_auth
        self.token_public_key = token_public_key
        self.token_issuer = token_issuer
        self.management_port: int | None = None

    # -- properties -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (Apicurio's own APIs live under ``/apis``)."""
        return f"http://{HOST}:{self._require_port()}"

    @property
    def url(self) -> str:
        """The Confluent Schema Registry API: what confluent-kafka's ``SchemaRegistryClient`` takes."""
        return self.base_url + CCOMPAT_PATH

    @property
    def address(self) -> str:
        return self.url

    @property
    def log_path(self) -> Path:
        """The JVM's stdout/stderr: Quarkus' console log, access log included."""
        return self.stdout_log

    @property
    def _auth_header(self) -> str | None:
        if self.basic_auth is None:
            return None
        return "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()

    # -- lifecycle ------------------------------------------------------------

    def start(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        *,
        management_port: int | None = None,
        timeout: float = 90.0,
    ) -> str:
        """Start (or restart) the registry and block until it serves the Confluent API.

        ``data_dir`` and the ports default to those of the previous start; on the first start
        ``data_dir`` is required and free ports are picked when none are given. Returns ``url``.
        """
        self.port, self.management_port = self._prepare(
            data_dir,
            self.port if port is None else port,
            self.management_port if management_port is None else management_port,
        )
        data_dir = self._require_data_dir()
        started = time.monotonic()  # startup_seconds covers JVM start + readiness
        app = fetch_registry(self.app_dir)
        java = find_java()
        (data_dir / "config").mkdir(parents=True, exist_ok=True)
        (data_dir / "tmp").mkdir(exist_ok=True)
        props_path = data_dir / "config" / "application.properties"
        props_path.write_text(
            _properties(
                data_dir,
                self.port,
                self.management_port,
                self.basic_auth,
                self.token_public_key,
                self.token_issuer,
            )
        )
        props_path.chmod(0o600)  # may hold the test user's password
        cmd = [
            java,
            f"-Xmx{self.heap_max_mb}m",
            "-XX:+UseSerialGC",  # one small heap, few GC threads: a test registry on 2 cores
            "-XX:TieredStopAtLevel=1",  # start fast; peak JIT speed is irrelevant for a few requests
            # Class-data sharing: the first run writes the archive at exit, later starts map it
            # (about 40% faster here); a stale or foreign archive is ignored and rewritten.
            "-XX:+AutoCreateSharedArchive",
            f"-XX:SharedArchiveFile={app.parent / 'registry.jsa'}",
            f"-Djava.io.tmpdir={data_dir / 'tmp'}",
            "-Djava.awt.headless=true",
            "-jar",
            str(app / _RUNNER),
        ]
        # It runs in the data dir, so Quarkus reads ./config/application.properties.
        return self._run(cmd, started=started, timeout=timeout)

    def _readiness_probe(self) -> Callable[[], None]:
        """The management port reports ``/health/ready`` UP *and* the Confluent API answers
        ``GET /subjects``, which reads the storage."""
        health = f"http://{HOST}:{self.management_port}/health/ready"

        def probe() -> None:
            status, body = _get(health, None)
            if status != 200 or json.loads(body).get("status") != "UP":
                raise SchemaRegistryError(f"{health} answered {status}: {body[:200]!r}")
            status, body = _get(self.url + "/subjects", self._auth_header)
            if status == 401 and self.basic_auth is None and self.token_public_key is not None:
                return  # token-only: without a token to probe with, "401" is the API answering
            if status != 200 or not isinstance(json.loads(body), list):
                raise SchemaRegistryError(f"GET {self.url}/subjects answered {status}: {body[:200]!r}")

        return probe


# --------------------------------------------------------------------------- CLI


def _read_ports(data_dir: Path) -> Mapping[str, int]:
    try:
        return json.loads((data_dir / _PORTS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}


class _RegistryCli(ServerCli):
    prog = "schema_registry.py"
    description = __doc__.split("\n\n")[0]
    name = "Schema Registry"
    server = LocalSchemaRegistry
    fetch_help = "download and unpack the registry with Maven (idempotent)"
    data_dir = DEMO_DATA_DIR
    port = DEMO_PORT
    pid_file = _PID_FILE_NAME

    def fetch(self, *, quiet: bool) -> Path:
        return fetch_registry(quiet=quiet)

    def add_start_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--management-port", type=int, default=None, help="default: port + 1")

    def launch(self, args: argparse.Namespace, data_dir: Path) -> LocalSchemaRegistry:
        registry = LocalSchemaRegistry(watchdog=False, detach=True)
        mgmt_port = args.management_port or args.port + 1
        registry.start(data_dir, args.port, management_port=mgmt_port, timeout=args.timeout)
        (data_dir / _PORTS_FILE_NAME).write_text(
            json.dumps({"port": args.port, "management_port": mgmt_port})
        )
        return registry

    def is_ours(self, pid: int, data_dir: Path) -> bool:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(f"/proc/{pid}/cwd").resolve()
        return _RUNNER.encode() in cmdline and cwd == data_dir.resolve()

    def address(self, data_dir: Path) -> str | None:
        return f"http://{HOST}:{_read_ports(data_dir).get('port')}{CCOMPAT_PATH}"


def main(argv: list[str] | None = None) -> int:
    return _RegistryCli().main(argv)


if __name__ == "__main__":
    sys.exit(main())
