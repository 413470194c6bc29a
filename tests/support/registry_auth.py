"""A local Schema Registry that checks credentials, and the bearer tokens it takes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import RSAKey
from schema_registry import LocalSchemaRegistry

REGISTRY_USER = "signal"
REGISTRY_PASSWORD = "registry-password"
TOKEN_ISSUER = "signal-sync-tests"
TOKEN_AUDIENCE = "registry-api"


@contextmanager
def secured_registry(data_dir: Path, key: RSAKey) -> Iterator[LocalSchemaRegistry]:
    """A started local registry with HTTP Basic (``REGISTRY_USER``, ``REGISTRY_PASSWORD``) and bearer
    tokens (RS256 from ``TOKEN_ISSUER``, verified against ``key``) on; stopped on exit."""
    registry = LocalSchemaRegistry(
        basic_auth=(REGISTRY_USER, REGISTRY_PASSWORD),
        token_public_key=key.as_pem().decode(),
        token_issuer=TOKEN_ISSUER,
    )
    with registry:
        registry.start(data_dir)
        yield registry


def bearer_token(signer: RSAKey) -> str:
    """A token for ``secured_registry``, valid for five minutes, signed by ``signer`` (RS256)."""
    now = int(time.time())
    claims = {"iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE, "sub": "signal-sync", "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "RS256"}, claims, signer)
