"""Secrets at rest: private keys sealed by a store layer (any backend), a private data dir."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from kumadp.cp.ca import MeshCAs
from kumadp.cp.data_dir import DataDirError, prepare_data_dir, restrict_store_files
from kumadp.cp.secrets import (
    PREFIX,
    SealedStore,
    SecretsError,
    SecretsKey,
    is_sealed,
    load_secrets_key,
)
from kumadp.cp.store import MemoryStore, SqliteStore
from kumadp.cp.tokens import TokenIssuer
from kumadp.resources.registry import MESH_CA_TYPE, SIGNING_KEY_TYPE
from testkit.store_conformance import store_conformance_suite

KEY = SecretsKey(b"0123456789abcdef0123456789abcdef")

# the layer keeps every promise of a store
TestSealedMemoryStore = store_conformance_suite(lambda tmp_path: SealedStore(MemoryStore(), KEY))


async def test_private_keys_never_reach_the_backend(tmp_path: Path) -> None:
    inner = SqliteStore(tmp_path / "kumadp.db")
    store = SealedStore(inner, KEY)
    tokens = TokenIssuer(store)
    try:
        token = await tokens.issue("default", "web-1")
        [raw] = await inner.list(SIGNING_KEY_TYPE)
        assert is_sealed(raw.spec["keyPem"]) and raw.spec["keyPem"].startswith(PREFIX)
        [opened] = await store.list(SIGNING_KEY_TYPE)
        assert opened.spec["keyPem"].startswith("-----BEGIN PRIVATE KEY")
        assert (await tokens.verify(token, mesh="default", name="web-1")).name == "web-1"
        # the file alone: no private key in it
        await store.put("Mesh", "", "default", {"type": "Mesh", "name": "default"})
        cas = MeshCAs(store)
        from kumadp.resources import parse_mesh

        mesh = parse_mesh(
            {
                "type": "Mesh",
                "name": "default",
                "mtls": {
                    "enabledBackend": "ca-1",
                    "backends": [{"name": "ca-1", "type": "builtin"}],
                },
            }
        )
        assert await cas.ca_for(mesh) is not None
        [ca] = await inner.list(MESH_CA_TYPE)
        assert is_sealed(ca.spec["keyPem"])
        [ca_open] = await store.list(MESH_CA_TYPE)
        assert "PRIVATE KEY" in ca_open.spec["keyPem"]
        secret_lines = [
            line.encode()
            for pem in (opened.spec["keyPem"], ca_open.spec["keyPem"])
            for line in pem.splitlines()[1:-1]
        ]
    finally:
        tokens.close()
        await store.close()
    content = _read_store_files(tmp_path)
    assert b"PRIVATE KEY" not in content
    assert not any(line in content for line in secret_lines)  # nor its base64 body


def _read_store_files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.glob("kumadp.db*"))


async def test_events_carry_the_opened_resource() -> None:
    store = SealedStore(MemoryStore(), KEY)
    sub = store.changes([SIGNING_KEY_TYPE])
    spec = {"type": SIGNING_KEY_TYPE, "mesh": "", "name": "k", "keyPem": "secret pem"}
    await store.put(SIGNING_KEY_TYPE, "", "k", spec)
    [event] = sub.drain()
    assert event.resource is not None and event.resource.spec["keyPem"] == "secret pem"
    # an identical write stays a no-op (same ciphertext kept)
    _, created = await store.put(SIGNING_KEY_TYPE, "", "k", dict(spec))
    assert not created and sub.drain() == []
    sub.close()


async def test_a_sealed_value_does_not_move_and_wrong_keys_say_so() -> None:
    inner = MemoryStore()
    store = SealedStore(inner, KEY)
    spec = {"type": SIGNING_KEY_TYPE, "mesh": "", "name": "a", "keyPem": "secret"}
    await store.put(SIGNING_KEY_TYPE, "", "a", spec)
    sealed = (await inner.get(SIGNING_KEY_TYPE, "", "a")).spec  # type: ignore[union-attr]
    await inner.put(SIGNING_KEY_TYPE, "", "b", {**sealed, "name": "b"})  # moved by hand
    with pytest.raises(SecretsError, match=r"SigningKey b \(keyPem\): the encrypted value is dam"):
        await store.get(SIGNING_KEY_TYPE, "", "b")
    other = SealedStore(inner, SecretsKey(b"another key of enough length!!"))
    with pytest.raises(SecretsError, match="encrypted with another secrets key"):
        await other.get(SIGNING_KEY_TYPE, "", "a")
    none = SealedStore(inner, None)
    with pytest.raises(SecretsError, match="is encrypted: start the control plane with --secr"):
        await none.prepare()


async def test_prepare_seals_keys_written_in_plaintext() -> None:
    inner = MemoryStore()
    spec = {"type": MESH_CA_TYPE, "mesh": "m", "name": "ca-1", "keyPem": "plain", "certPem": "c"}
    await inner.put(MESH_CA_TYPE, "m", "ca-1", spec)
    store = SealedStore(inner, KEY)
    assert await store.prepare() == 1
    raw = await inner.get(MESH_CA_TYPE, "m", "ca-1")
    assert raw is not None and is_sealed(raw.spec["keyPem"]) and raw.spec["certPem"] == "c"
    assert (await store.get(MESH_CA_TYPE, "m", "ca-1")).spec["keyPem"] == "plain"  # type: ignore[union-attr]
    assert await store.prepare() == 0


def test_loading_the_key(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("a" * 40 + "\n")
    assert load_secrets_key(file, {}).id == SecretsKey(b"a" * 40).id  # type: ignore[union-attr]
    assert load_secrets_key(None, {"KUMADP_SECRETS_KEY": "b" * 20}) is not None
    assert load_secrets_key(None, {"KUMADP_SECRETS_KEY_FILE": str(file)}) is not None
    assert load_secrets_key(None, {}) is None
    with pytest.raises(SecretsError, match="at least 16 bytes"):
        load_secrets_key(None, {"KUMADP_SECRETS_KEY": "short"})
    with pytest.raises(SecretsError, match="cannot read"):
        load_secrets_key(tmp_path / "missing", {})


def test_the_data_dir_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "cp"
    old = os.umask(0)
    try:
        prepare_data_dir(data, "kumadp.db")
        SqliteStore(data / "kumadp.db")  # opens, creates -wal/-shm
        restrict_store_files(data)
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = list(data.glob("kumadp.db*"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    sqlite3.connect(data / "kumadp.db").close()


def test_a_store_readable_by_others_stops_the_start(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    with pytest.raises(DataDirError, match=r"mode 755\); it holds the control plane's private"):
        prepare_data_dir(open_dir)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "kumadp.db").write_bytes(b"")
    (private / "kumadp.db").chmod(0o644)
    with pytest.raises(DataDirError, match=r"readable by other users \(mode 644\).*chmod 600"):
        prepare_data_dir(private)
