"""dev/schema_registry.py without a registry: which Java it picks and what it configures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from schema_registry import SchemaRegistryError, _java_major, _properties, find_java


def _fake_java(directory: Path, banner: str) -> Path:
    """A ``java`` that prints ``banner`` to stderr, as ``java -version`` does."""
    directory.mkdir(parents=True, exist_ok=True)
    java = directory / "java"
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(0o755)
    return java


@pytest.fixture(autouse=True)
def _fresh_java_lookup() -> Iterator[None]:
    find_java.cache_clear()
    yield
    find_java.cache_clear()


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "25.0.3" 2026-04-21 LTS', 25),
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21-ea" 2023-09-19', 21),
    ],
)
def test_java_major_reads_the_version_banner(tmp_path: Path, banner: str, major: int) -> None:
    assert _java_major(str(_fake_java(tmp_path, banner))) == major


def test_java_major_of_a_missing_binary_is_none(tmp_path: Path) -> None:
    assert _java_major(str(tmp_path / "nope" / "java")) is None


def test_override_may_name_a_jdk_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = _fake_java(tmp_path / "jdk-21" / "bin", 'openjdk version "21.0.4" 2024-07-16')
    monkeypatch.setenv("SCHEMA_REGISTRY_JAVA", str(tmp_path / "jdk-21"))
    assert find_java() == str(java)


def test_an_override_too_old_is_an_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_JAVA", str(_fake_java(tmp_path, 'openjdk version "17.0.15"')))
    with pytest.raises(SchemaRegistryError, match=r"\$SCHEMA_REGISTRY_JAVA=.* is Java 17; .* needs 21\+"):
        find_java()


def test_properties_bind_loopback_and_turn_on_only_the_requested_auth(tmp_path: Path) -> None:
    open_registry = _properties(tmp_path, 18081, 18082, None, None, "issuer")
    assert "quarkus.http.host=127.0.0.1\n" in open_registry
    assert "quarkus.http.port=18081\n" in open_registry
    assert "quarkus.management.port=18082\n" in open_registry
    assert "quarkus.http.auth.basic" not in open_registry
    assert "quarkus.oidc" not in open_registry

    pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\nBgkqhkiG\n-----END PUBLIC KEY-----\n"
    secured = _properties(tmp_path, 18081, 18082, ("signal", "pw"), pem, "tests")
    assert "quarkus.http.auth.basic=true\n" in secured
    assert "quarkus.security.users.embedded.users.signal=pw\n" in secured
    assert "quarkus.oidc.public-key=MIIBIjANBgkqhkiG\n" in secured  # the PEM body, without armour
    assert "quarkus.oidc.token.issuer=tests\n" in secured
