"""Dataplane tokens (kumadp.cp.tokens): Kuma's JWT format, verification (PyJWT, RS256 only)
and revocation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kumadp.cp.jwt import sign as encode_jwt
from kumadp.cp.signing_keys import PublicKeySet
from kumadp.cp.store import MemoryStore, SqliteStore, Store
from kumadp.cp.tokens import (
    REVOCATIONS_TYPE,
    SIGNING_KEY_TYPE,
    TokenError,
    TokenIssuer,
)


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


ALG_NONE = b64url_encode(json.dumps({"alg": "none"}).encode())
ALG_HS256 = b64url_encode(json.dumps({"alg": "HS256", "kid": "1"}).encode())
NO_KID = b64url_encode(json.dumps({"alg": "RS256"}).encode())


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "db")
    yield s
    await s.close()


@pytest.fixture
async def issuer(store: Store) -> AsyncIterator[TokenIssuer]:
    tokens = TokenIssuer(store)
    yield tokens
    tokens.close()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), b64url_decode(s)


def resign(token: str, claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    header, _, _ = parts(token)
    return encode_jwt(claims, key, header["kid"])


async def verify_error(issuer: TokenIssuer, token: str | None, **kw: Any) -> str:
    with pytest.raises(TokenError) as err:
        await issuer.verify(token, mesh=kw.get("mesh", "default"), name=kw.get("name", "web-1"))
    assert err.value.reason == str(err.value)
    return err.value.reason


async def test_round_trip_in_kumas_format(issuer: TokenIssuer) -> None:
    before = int(time.time())
    token = await issuer.issue(
        "default", "web-1", {"kuma.io/service": ["web"]}, valid_for=3600, proxy_type="dataplane"
    )
    header, payload, signature = parts(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "1"}
    assert set(payload) == {"Name", "Mesh", "Tags", "Type", "jti", "iat", "nbf", "exp"}
    assert payload["Name"] == "web-1" and payload["Mesh"] == "default"
    assert payload["Tags"] == {"kuma.io/service": ["web"]} and payload["Type"] == "dataplane"
    assert before <= payload["iat"] <= int(time.time())
    assert payload["exp"] == payload["iat"] + 3600
    assert payload["nbf"] < payload["iat"]
    assert len(signature) == 256  # RSA 2048
    assert "=" not in token

    claims = await issuer.verify(token, mesh="default", name="web-1")
    assert (claims.name, claims.mesh, claims.type, claims.kid) == (
        "web-1",
        "default",
        "dataplane",
        "1",
    )
    assert claims.jti == payload["jti"] and claims.exp == payload["exp"]
    assert claims.tags == {"kuma.io/service": ["web"]} and claims.services == {"web"}
    # a token file ends with a newline
    assert (await issuer.verify(token + "\n", mesh="default", name="web-1")).jti == claims.jti


async def test_tokens_differ_and_nameless_tokens_fit_any_dataplane(issuer: TokenIssuer) -> None:
    a, b = await issuer.issue("default"), await issuer.issue("default")
    assert parts(a)[1]["jti"] != parts(b)[1]["jti"]
    claims = await issuer.verify(a, mesh="default", name="anything")
    assert claims.name == "" and claims.tags == {} and claims.services is None
    assert parts(a)[1]["exp"] - parts(a)[1]["iat"] == 10 * 365 * 86400


async def test_signing_key_is_stored_once_and_survives_a_restart(store: Store) -> None:
    first = TokenIssuer(store)
    token = await first.issue("default", "web-1")
    first.close()
    [key] = await store.list(SIGNING_KEY_TYPE, "")
    assert key.name == "dataplane-token-signing-key-1" and key.spec["kid"] == "1"
    assert "BEGIN PRIVATE KEY" in key.spec["keyPem"]
    second = TokenIssuer(store)  # a restarted control plane
    try:
        assert (await second.verify(token, mesh="default", name="web-1")).name == "web-1"
        await second.issue("default")
        assert len(await store.list(SIGNING_KEY_TYPE, "")) == 1
    finally:
        second.close()


async def test_two_instances_racing_share_one_key(store: Store) -> None:
    a, b = TokenIssuer(store), TokenIssuer(store)
    try:
        ta, tb = await asyncio.gather(a.issue("default"), b.issue("default"))
        assert len(await store.list(SIGNING_KEY_TYPE, "")) == 1
        await a.verify(tb, mesh="default", name="x")
        await b.verify(ta, mesh="default", name="x")
    finally:
        a.close()
        b.close()


async def test_missing_token(issuer: TokenIssuer) -> None:
    for empty in (None, "", "  \n"):
        assert (
            await verify_error(issuer, empty) == "no dataplane token: pass --dataplane-token-file"
        )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("abc", "malformed token: expected 3 dot-separated parts, got 1"),
        ("a.b.c.d", "malformed token: expected 3 dot-separated parts, got 4"),
        ("!!.e30.AA", "malformed token: the header is not base64url JSON"),
        (
            f"{b64url_encode(b'not json')}.e30.AA",
            "malformed token: the header is not base64url JSON",
        ),
        (f"{b64url_encode(b'[1]')}.e30.AA", "malformed token: the header is not base64url JSON"),
        ("e30.e30.AA", "malformed token: unsupported alg null (expected RS256)"),
        ("x" * 9000, "malformed token: longer than 8192 bytes"),
        (f"{ALG_NONE}.e30.", 'malformed token: unsupported alg "none" (expected RS256)'),
        (f"{ALG_HS256}.e30.AA", 'malformed token: unsupported alg "HS256" (expected RS256)'),
        (f"{NO_KID}.e30.AA", "malformed token: no kid in the header"),
    ],
)
async def test_malformed_tokens(issuer: TokenIssuer, token: str, reason: str) -> None:
    assert await verify_error(issuer, token) == reason


async def test_unknown_kid(issuer: TokenIssuer) -> None:
    token = await issuer.issue("default")
    _, payload, _ = parts(token)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = encode_jwt(payload, other, "7")
    assert await verify_error(issuer, forged) == (
        'unknown signing key (kid "7"): the token was not issued by this control plane'
    )


async def test_forged_token_signed_with_another_key(issuer: TokenIssuer) -> None:
    token = await issuer.issue("default", "web-1")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, payload, _ = parts(token)
    forged = resign(token, payload, other)  # same kid, same claims, wrong key
    assert await verify_error(issuer, forged) == (
        "signature does not verify: the token is not a dataplane token issued by this control plane"
    )


async def test_tampered_payload(issuer: TokenIssuer) -> None:
    token = await issuer.issue("other", "web-1")
    h, p, s = token.split(".")
    payload = json.loads(b64url_decode(p))
    payload["Mesh"] = "default"
    tampered = f"{h}.{b64url_encode(json.dumps(payload).encode())}.{s}"
    assert await verify_error(issuer, tampered) == (
        "signature does not verify: the token is not a dataplane token issued by this control plane"
    )
    # a flipped signature bit, too
    sig = bytearray(b64url_decode(s))
    sig[0] ^= 1
    assert "signature does not verify" in await verify_error(
        issuer, f"{h}.{p}.{b64url_encode(bytes(sig))}"
    )


async def test_expired_and_not_yet_valid(issuer: TokenIssuer, store: Store) -> None:
    token = await issuer.issue("default", "web-1")
    [stored] = await store.list(SIGNING_KEY_TYPE, "")
    key = serialization.load_pem_private_key(stored.spec["keyPem"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    _, payload, _ = parts(token)
    expired = resign(token, {**payload, "exp": 1_700_000_000}, key)
    assert await verify_error(issuer, expired) == "token expired at 2023-11-14T22:13:20Z"
    future = resign(token, {**payload, "nbf": 4_102_444_800}, key)
    assert await verify_error(issuer, future) == "token is not valid before 2100-01-01T00:00:00Z"
    missing = resign(token, {k: v for k, v in payload.items() if k != "exp"}, key)
    assert await verify_error(issuer, missing) == "malformed token: claim exp is required"
    no_jti = resign(token, {**payload, "jti": ""}, key)
    assert await verify_error(issuer, no_jti) == (
        "malformed token: claim jti must be a non-empty string"
    )
    huge = resign(token, {**payload, "nbf": 1e300}, key)
    assert await verify_error(issuer, huge) == "token is not valid before a time out of range"
    huge_exp = resign(token, {**payload, "exp": 1e300}, key)
    assert await verify_error(issuer, huge_exp) == "malformed token: claim exp must be a number"
    bad_tags = resign(token, {**payload, "Tags": {"kuma.io/service": "web"}}, key)
    assert await verify_error(issuer, bad_tags) == (
        "malformed token: claim Tags must map tags to lists of strings"
    )


async def test_revocation_is_immediate_and_persisted(store: Store) -> None:
    issuer = TokenIssuer(store)
    try:
        token = await issuer.issue("default", "web-1")
        keep = await issuer.issue("default", "web-1")
        await issuer.verify(token, mesh="default", name="web-1")  # warms the caches
        jti = parts(token)[1]["jti"]
        assert await issuer.revoke(jti) is True
        assert await issuer.revoke(jti) is False  # idempotent
        assert await verify_error(issuer, token) == f"token was revoked (jti {jti})"
        await issuer.verify(keep, mesh="default", name="web-1")
        assert await issuer.revoked() == {jti}
        stored = await store.get(REVOCATIONS_TYPE, "", "dataplane")
        assert stored is not None and stored.spec["jtis"] == [jti]
    finally:
        issuer.close()
    again = TokenIssuer(store)  # a restarted control plane
    try:
        assert await again.revoked() == {jti}
        assert "revoked" in await verify_error(again, token)
    finally:
        again.close()


async def test_revocation_by_another_instance_on_the_same_store(store: Store) -> None:
    a, b = TokenIssuer(store), TokenIssuer(store)
    try:
        token = await a.issue("default", "web-1")
        await a.verify(token, mesh="default", name="web-1")  # a caches "nothing revoked"
        jti = parts(token)[1]["jti"]
        await b.revoke(jti)
        assert "revoked" in await verify_error(a, token)
        await a.revoke("other-jti")
        assert await b.revoked() == {jti, "other-jti"}
    finally:
        a.close()
        b.close()


async def test_other_mesh_and_other_name(issuer: TokenIssuer) -> None:
    token = await issuer.issue("payments", "web-1")
    assert await verify_error(issuer, token, mesh="default") == (
        "token is for mesh payments, not default"
    )
    assert await verify_error(issuer, token, mesh="payments", name="web-2") == (
        "token is for dataplane web-1, not web-2"
    )
    assert (await issuer.verify(token, mesh="payments", name="web-1")).mesh == "payments"


async def test_proxy_type_is_checked_when_asked(issuer: TokenIssuer) -> None:
    token = await issuer.issue("default", "ingress-1", proxy_type="ingress")
    assert (await issuer.verify(token, mesh="default", name="ingress-1")).type == "ingress"
    with pytest.raises(TokenError, match="token is for a proxy of type ingress, not dataplane"):
        await issuer.verify(token, mesh="default", name="ingress-1", proxy_type="dataplane")


async def test_issue_rejects_bad_arguments(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="mesh"):
        await issuer.issue("")
    with pytest.raises(ValueError, match="valid for"):
        await issuer.issue("default", valid_for=0)
    with pytest.raises(ValueError, match="too long"):
        await issuer.issue("default", valid_for=10_000 * 365 * 86400)
    with pytest.raises(ValueError, match="proxy type"):
        await issuer.issue("default", proxy_type="gateway")
    with pytest.raises(ValueError, match=r"tags\.kuma\.io/service"):
        await issuer.issue("default", tags={"kuma.io/service": "web"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="jti"):
        await issuer.revoke(" ")


async def test_hmac_keyed_with_the_public_key_is_refused(issuer: TokenIssuer) -> None:
    token = await issuer.issue("default", "web-1")
    keys = issuer.signing_keys
    assert keys is not None
    [public] = await keys.public_keys()
    _, payload, _ = parts(token)
    header = b64url_encode(json.dumps({"alg": "HS256", "kid": "1", "typ": "JWT"}).encode())
    body = b64url_encode(json.dumps(payload).encode())
    import hmac

    mac = hmac.new(public.pem.encode(), f"{header}.{body}".encode(), "sha256").digest()
    forged = f"{header}.{body}.{b64url_encode(mac)}"
    assert await verify_error(issuer, forged) == (
        'malformed token: unsupported alg "HS256" (expected RS256)'
    )


async def test_a_zone_cp_verifies_with_public_keys_only(store: Store) -> None:
    global_cp = TokenIssuer(store)
    other_store = MemoryStore()
    try:
        token = await global_cp.issue("default", "web-1")
        assert global_cp.signing_keys is not None
        public = [k.to_jwk() for k in await global_cp.signing_keys.public_keys()]
        assert all("d" not in jwk and jwk["kid"] == "1" for jwk in public)
        zone = TokenIssuer(other_store, public_keys=PublicKeySet.from_documents(public))
        assert (await zone.verify(token, mesh="default", name="web-1")).name == "web-1"
        with pytest.raises(TokenError, match="generate tokens on the global one"):
            await zone.issue("default")
        assert await other_store.list(SIGNING_KEY_TYPE) == []  # no private key made
        zone.close()
    finally:
        global_cp.close()
        await other_store.close()


def test_signature_is_pkcs1v15_sha256() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = encode_jwt({"a": 1}, key, "k")
    h, p, s = token.split(".")
    assert json.loads(b64url_decode(h)) == {"alg": "RS256", "kid": "k", "typ": "JWT"}
    key.public_key().verify(
        b64url_decode(s), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
