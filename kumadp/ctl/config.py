"""The control-planes config file of ``kumadp ctl``, shaped like kumactl's::

    controlPlanes:
      - name: local
        coordinates:
          apiServer:
            url: https://cp:5682
            authType: tokens            # optional: how ctl authenticates
            authConf: {token: eyJ...}   # a user token (the file is 0600)
            caCertFile: /path/ca.pem    # optional: the CA of the API's certificate
            clientCertFile: ...         # optional client certificate and key
            clientKeyFile: ...
    contexts:
      - name: local
        controlPlane: local
    currentContext: local

It lives at ``~/.kumadp/config.yaml`` (``KUMADP_CONFIG`` overrides the path). Adding a
control plane adds a context of the same name and makes it current, as kumactl does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kumadp.ctl.client import DEFAULT_CP_URL, ApiClient, CtlError, check_url
from kumadp.resources.safe_load import load_yaml

CONFIG_ENV = "KUMADP_CONFIG"


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".kumadp" / "config.yaml"


AUTH_TYPES = ("tokens",)


@dataclass
class ControlPlaneEntry:
    name: str
    url: str
    auth_type: str = ""  # "" = none; "tokens": send authConf.token as a bearer token
    auth_conf: dict[str, str] = field(default_factory=dict)
    ca_cert_file: str = ""
    client_cert_file: str = ""
    client_key_file: str = ""

    @property
    def token(self) -> str | None:
        return self.auth_conf.get("token") if self.auth_type == "tokens" else None

    def api_server(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"url": self.url}
        if self.auth_type:
            doc["authType"] = self.auth_type
            doc["authConf"] = dict(self.auth_conf)
        for key, value in (
            ("caCertFile", self.ca_cert_file),
            ("clientCertFile", self.client_cert_file),
            ("clientKeyFile", self.client_key_file),
        ):
            if value:
                doc[key] = value
        return doc

    def client(self, url: str | None = None) -> ApiClient:
        """A client of this control plane (at ``url`` if given), with its credentials."""
        cert = (self.client_cert_file, self.client_key_file) if self.client_cert_file else None
        return ApiClient(
            url or self.url, token=self.token, ca_cert_file=self.ca_cert_file or None, cert=cert
        )


@dataclass
class Config:
    control_planes: list[ControlPlaneEntry] = field(default_factory=list)
    current: str = ""  # the current context (= control plane) name; "" = none

    def find(self, name: str) -> ControlPlaneEntry | None:
        return next((cp for cp in self.control_planes if cp.name == name), None)

    def current_url(self) -> str | None:
        entry = self.current_entry()
        return entry.url if entry else None

    def current_entry(self) -> ControlPlaneEntry | None:
        return self.find(self.current) if self.current else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "controlPlanes": [
                {"name": cp.name, "coordinates": {"apiServer": cp.api_server()}}
                for cp in self.control_planes
            ],
            "contexts": [{"name": cp.name, "controlPlane": cp.name} for cp in self.control_planes],
            "currentContext": self.current,
        }


def _bad(path: Path, reason: str) -> CtlError:
    return CtlError(f"config file {path}: {reason}")


def _parse(raw: Any, path: Path) -> Config:
    if raw is None:
        return Config()
    if not isinstance(raw, dict):
        raise _bad(path, "must be a YAML mapping")
    config = Config()
    planes = raw.get("controlPlanes") or []
    if not isinstance(planes, list):
        raise _bad(path, "controlPlanes: must be a list")
    for i, item in enumerate(planes):
        try:
            name = item["name"]
            url = item["coordinates"]["apiServer"]["url"]
        except (KeyError, TypeError):
            raise _bad(
                path, f"controlPlanes[{i}]: needs name and coordinates.apiServer.url"
            ) from None
        if not isinstance(name, str) or not isinstance(url, str):
            raise _bad(path, f"controlPlanes[{i}]: name and url must be strings")
        config.control_planes.append(_entry(name, url, item["coordinates"]["apiServer"], path, i))
    # A context points at a control plane; the current context decides which one is used.
    contexts: dict[str, str] = {}
    for ctx in raw.get("contexts") or []:
        if isinstance(ctx, dict) and isinstance(ctx.get("name"), str):
            contexts[ctx["name"]] = str(ctx.get("controlPlane") or ctx["name"])
    current = raw.get("currentContext") or ""
    if not isinstance(current, str):
        raise _bad(path, "currentContext: must be a string")
    config.current = contexts.get(current, current)
    return config


def _entry(name: str, url: str, api: dict[str, Any], path: Path, i: int) -> ControlPlaneEntry:
    where = f"controlPlanes[{i}].coordinates.apiServer"
    auth_type = api.get("authType") or ""
    conf = api.get("authConf") or {}
    if auth_type and auth_type not in AUTH_TYPES:
        raise _bad(path, f"{where}.authType: must be one of {', '.join(AUTH_TYPES)}")
    if not isinstance(conf, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in conf.items()
    ):
        raise _bad(path, f"{where}.authConf: must map names to strings")
    files = {}
    for key in ("caCertFile", "clientCertFile", "clientKeyFile"):
        value = api.get(key) or ""
        if not isinstance(value, str):
            raise _bad(path, f"{where}.{key}: must be a string")
        files[key] = value
    return ControlPlaneEntry(
        name,
        url,
        auth_type=str(auth_type),
        auth_conf=dict(conf),
        ca_cert_file=files["caCertFile"],
        client_cert_file=files["clientCertFile"],
        client_key_file=files["clientKeyFile"],
    )


def parse_auth(auth_type: str | None, items: list[str]) -> tuple[str, dict[str, str]]:
    """``--auth-type tokens --auth-conf token=...`` as (type, conf); ``CtlError`` otherwise."""
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CtlError(f"--auth-conf: {item[:20]!r}... is not KEY=VALUE")
        conf[key.strip()] = value.strip()
    if not auth_type:
        if conf:
            raise CtlError("--auth-conf needs --auth-type")
        return "", {}
    if auth_type not in AUTH_TYPES:
        raise CtlError(f"--auth-type: must be one of {', '.join(AUTH_TYPES)}")
    if not conf.get("token"):
        raise CtlError("--auth-type tokens needs --auth-conf token=<user token>")
    unknown = sorted(set(conf) - {"token"})
    if unknown:
        raise CtlError(f"--auth-conf: unknown key {unknown[0]} (tokens takes token=...)")
    return auth_type, conf


def load(path: Path | None = None) -> Config:
    """The config at ``path`` (default: ``config_path()``); an empty one when absent."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise _bad(path, f"invalid YAML: {' '.join(str(exc).split())}") from None
    return _parse(raw, path)


def save(config: Config, path: Path | None = None) -> None:
    """Write ``config`` atomically, readable by its owner only."""
    path = path or config_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(config.to_dict(), f, sort_keys=False)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from None


def resolve_client(flag: str | None, path: Path | None = None) -> ApiClient:
    """A client of the CP to talk to (see ``resolve_address``), with the credentials of the
    config's entry for it: the current one, or with ``--cp-address``, an entry of that
    address."""
    config = load(path)
    if flag:
        url = check_url(flag)
        entry = next((cp for cp in config.control_planes if cp.url.rstrip("/") == url), None)
        return entry.client(url) if entry is not None else ApiClient(url)
    current = config.current_entry()
    if current is not None:
        return current.client(check_url(current.url, "config file"))
    return ApiClient(DEFAULT_CP_URL)


def resolve_address(flag: str | None, path: Path | None = None) -> str:
    """The CP to talk to: ``--cp-address``/``KUMADP_CP_URL`` when given, else the config's
    current control plane, else ``DEFAULT_CP_URL``."""
    if flag:
        return check_url(flag)
    url = load(path).current_url()
    return check_url(url, "config file") if url else DEFAULT_CP_URL


def check_control_plane(url: str, client_factory: Callable[[str], ApiClient] = ApiClient) -> None:
    """``CtlError`` unless ``GET /`` at ``url`` answers a control plane's index."""
    with client_factory(url) as client:
        index = client.get_json("/")
    if not isinstance(index, dict) or "version" not in index:
        raise CtlError(
            f"{url} does not look like a kumadp control plane's API "
            "(GET / did not answer its index); use --no-check to add it anyway"
        )


def add(
    name: str,
    url: str,
    *,
    overwrite: bool = False,
    check: bool = True,
    path: Path | None = None,
    entry: ControlPlaneEntry | None = None,
) -> None:
    """Remember control plane ``name`` at ``url`` (with the credentials and files of
    ``entry``, if given) and make it current."""
    if not name.strip():
        raise CtlError("--name: must not be empty")
    url = check_url(url, "--address")
    config = load(path)
    existing = config.find(name)
    if existing is not None and not overwrite:
        raise CtlError(f'control plane "{name}" already exists; use --overwrite to replace it')
    new = entry or ControlPlaneEntry(name, url)
    new.name, new.url = name, url
    if check:
        check_control_plane(url, lambda u: new.client(u))
    if existing is not None:
        config.control_planes[config.control_planes.index(existing)] = new
    else:
        config.control_planes.append(new)
    config.current = name
    save(config, path)


def _require(config: Config, name: str) -> ControlPlaneEntry:
    entry = config.find(name)
    if entry is None:
        known = ", ".join(cp.name for cp in config.control_planes) or "none"
        raise CtlError(f'there is no control plane "{name}" (known: {known})')
    return entry


def switch(name: str, path: Path | None = None) -> None:
    config = load(path)
    _require(config, name)
    config.current = name
    save(config, path)


def remove(name: str, path: Path | None = None) -> bool:
    """Remove ``name``; True when it was the current one (none is current afterwards)."""
    config = load(path)
    entry = _require(config, name)
    config.control_planes.remove(entry)
    was_current = config.current == name
    if was_current:
        config.current = ""
    save(config, path)
    return was_current


__all__ = [
    "CONFIG_ENV",
    "Config",
    "ControlPlaneEntry",
    "add",
    "check_control_plane",
    "config_path",
    "load",
    "parse_auth",
    "remove",
    "resolve_address",
    "resolve_client",
    "save",
    "switch",
]
