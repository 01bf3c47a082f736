"""Zone and user tokens, and sharing signing keys as public keys only."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kumadp.cp.jwt import TokenError, sign
from kumadp.cp.signing_keys import (
    PublicKeySet,
    load_public_key,
    public_jwks,
    public_signing_keys,
)
from kumadp.cp.store import MemoryStore, Store
from kumadp.cp.tokens import TokenIssuer
from kumadp.cp.user_tokens import ADMIN_GROUP, UserTokens
from kumadp.cp.zone_tokens import ZoneTokens, verify_zone_token
from kumadp.resources.registry import SIGNING_KEY_TYPE


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = MemoryStore()
    yield s
    await s.close()


@pytest.fixture
async def zones(store: Store) -> AsyncIterator[ZoneTokens]:
    tokens = ZoneTokens(store)
    yield tokens
    tokens.close()


def claims_of(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    h, p, _ = token.split(".")

    def load(part: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return load(h), load(p)


async def test_zone_token_format(zones: ZoneTokens, store: Store) -> None:
    before = int(time.time())
    token = await zones.issue("zone-a", ["cp"], valid_for=720 * 3600)
    header, payload = claims_of(token)
    assert header["alg"] == "RS256" and header["kid"] == "1"
    assert set(payload) == {"Zone", "Scope", "jti", "iat", "nbf", "exp"}
    assert payload["Zone"] == "zone-a" and payload["Scope"] == ["cp"]
    assert before <= payload["iat"] and payload["exp"] == payload["iat"] + 720 * 3600
    assert payload["nbf"] == payload["iat"] - 300
    [key] = await store.list(SIGNING_KEY_TYPE, "")
    assert key.name == "zone-token-signing-key-1"  # its own key, not the dataplane one
    claims = await zones.verify(token, zone="zone-a", scope="cp")
    assert (claims.zone, claims.scope, claims.jti) == ("zone-a", ("cp",), payload["jti"])


async def test_default_scopes_are_ingress_and_egress(zones: ZoneTokens) -> None:
    token = await zones.issue("zone-a")
    assert claims_of(token)[1]["Scope"] == ["ingress", "egress"]
    await zones.verify(token, scope="ingress")  # any zone when none is asked
    await zones.verify(token, zone="zone-a", scope="egress")


async def test_zone_token_errors_say_which_check_failed(zones: ZoneTokens) -> None:
    ingress = await zones.issue("zone-a", ["ingress"])
    with pytest.raises(TokenError) as err:
        await zones.verify(ingress, zone="zone-b", scope="ingress")
    assert str(err.value) == "token is for zone zone-a, not zone-b"
    with pytest.raises(TokenError) as err:
        await zones.verify(ingress, zone="zone-a", scope="egress")
    assert str(err.value) == "token scope is [ingress], not egress"
    with pytest.raises(TokenError) as err:
        await zones.verify(ingress, zone="zone-a", scope="cp")
    assert str(err.value) == "token scope is [ingress], not cp"
    jti = claims_of(ingress)[1]["jti"]
    assert await zones.revoke(jti)
    with pytest.raises(TokenError) as err:
        await zones.verify(ingress, zone="zone-a", scope="ingress")
    assert str(err.value) == f"token was revoked (jti {jti})"


async def test_expired_and_forged_zone_tokens(zones: ZoneTokens, store: Store) -> None:
    token = await zones.issue("zone-a", ["cp"])
    [stored] = await store.list(SIGNING_KEY_TYPE, "")
    key = serialization.load_pem_private_key(stored.spec["keyPem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    payload = claims_of(token)[1]
    expired = sign({**payload, "exp": 1_700_000_000}, key, "1")
    with pytest.raises(TokenError, match="token expired at 2023-11-14T22:13:20Z"):
        await zones.verify(expired, zone="zone-a", scope="cp")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenError, match="signature does not verify: the token is not a zone"):
        await zones.verify(sign(payload, other, "1"), zone="zone-a", scope="cp")
    no_scope = sign({k: v for k, v in payload.items() if k != "Scope"}, key, "1")
    with pytest.raises(TokenError, match="claim Scope is required"):
        await zones.verify(no_scope, zone="zone-a", scope="cp")
    bad_scope = sign({**payload, "Scope": ["admin"]}, key, "1")
    with pytest.raises(TokenError, match="claim Scope must hold some of cp, ingress, egress"):
        await zones.verify(bad_scope, zone="zone-a", scope="cp")


async def test_a_dataplane_token_is_not_a_zone_token(store: Store, zones: ZoneTokens) -> None:
    dataplanes = TokenIssuer(store)
    try:
        await zones.issue("zone-a")  # both purposes have a key with kid 1
        dp_token = await dataplanes.issue("default", "web-1")
        with pytest.raises(TokenError, match="signature does not verify"):
            await zones.verify(dp_token, scope="ingress")
    finally:
        dataplanes.close()


async def test_issue_checks_its_arguments(zones: ZoneTokens) -> None:
    for zone in ("", "Zone A", "-a", "a" * 64):
        with pytest.raises(ValueError, match="zone: must be"):
            await zones.issue(zone)
    with pytest.raises(ValueError, match='scope: must be one of cp, ingress, egress, not "x"'):
        await zones.issue("zone-a", ["x"])
    with pytest.raises(ValueError, match="scope: at least one"):
        await zones.issue("zone-a", [])
    with pytest.raises(ValueError, match="valid for"):
        await zones.issue("zone-a", valid_for=0)


async def test_a_zone_verifies_with_public_keys_only(store: Store, zones: ZoneTokens) -> None:
    token = await zones.issue("zone-a", ["cp", "ingress"])
    exported = await public_signing_keys(store)
    assert [(k.name, k.purpose, k.kid) for k in exported] == [
        ("zone-token-signing-key-1", "zone", "1")
    ]
    jwks = public_jwks(exported)
    text = json.dumps(jwks)
    assert "PRIVATE" not in text and all("d" not in k for k in jwks["keys"])
    assert "PRIVATE" not in exported[0].pem
    # what a zone CP builds from what global synced: JWKs or PEMs
    from_jwks = PublicKeySet.from_documents(jwks["keys"], purpose="zone")
    from_pems = PublicKeySet.from_documents([{"kid": "1", "publicKeyPem": exported[0].pem}])
    for keys in (from_jwks, from_pems):
        claims = await verify_zone_token(token, keys, zone="zone-a", scope="cp")
        assert claims.zone == "zone-a"
    zone_store = MemoryStore()
    try:
        on_zone = ZoneTokens(zone_store, public_keys=from_jwks)
        assert (await on_zone.verify(token, zone="zone-a", scope="ingress")).zone == "zone-a"
        with pytest.raises(TokenError, match="generate tokens on the global one"):
            await on_zone.issue("zone-a")
        on_zone.close()
        assert await zone_store.list(SIGNING_KEY_TYPE) == []
    finally:
        await zone_store.close()
    assert PublicKeySet.from_documents(jwks["keys"], purpose="user").kids() == []


def test_a_private_key_is_refused_where_a_public_one_is_expected() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match="private key"):
        load_public_key(pem)
    from jwt.algorithms import RSAAlgorithm

    with pytest.raises(ValueError, match="private key"):
        load_public_key(RSAAlgorithm.to_jwk(key, as_dict=True))


async def test_user_tokens(store: Store) -> None:
    users = UserTokens(store)
    try:
        admin = await users.issue("alice", [ADMIN_GROUP], valid_for=3600)
        reader = await users.issue("bob", ["team-a"])
        assert claims_of(admin)[1]["Name"] == "alice"
        assert claims_of(admin)[1]["Groups"] == [ADMIN_GROUP]
        claims = await users.verify(admin)
        assert claims.name == "alice" and claims.is_admin
        assert not (await users.verify(reader)).is_admin
        await users.revoke(claims.jti)
        with pytest.raises(TokenError, match="revoked"):
            await users.verify(admin)
        with pytest.raises(TokenError, match="no user token"):
            await users.verify("")
        with pytest.raises(ValueError, match="name"):
            await users.issue("", [])
        with pytest.raises(ValueError, match="group"):
            await users.issue("carol", ["bad group"])
    finally:
        users.close()
