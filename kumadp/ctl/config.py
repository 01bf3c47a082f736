"""The control-planes config file of ``kumadp ctl``, shaped like kumactl's::

    controlPlanes:
      - name: local
        coordinates:
          apiServer:
            url: http://127.0.0.1:5681
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


@dataclass
class ControlPlaneEntry:
    name: str
    url: str


@dataclass
class Config:
    control_planes: list[ControlPlaneEntry] = field(default_factory=list)
    current: str = ""  # the current context (= control plane) name; "" = none

    def find(self, name: str) -> ControlPlaneEntry | None:
        return next((cp for cp in self.control_planes if cp.name == name), None)

    def current_url(self) -> str | None:
        entry = self.find(self.current) if self.current else None
        return entry.url if entry else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "controlPlanes": [
                {"name": cp.name, "coordinates": {"apiServer": {"url": cp.url}}}
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
        config.control_planes.append(ControlPlaneEntry(name, url))
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
) -> None:
    if not name.strip():
        raise CtlError("--name: must not be empty")
    url = check_url(url, "--address")
    config = load(path)
    existing = config.find(name)
    if existing is not None and not overwrite:
        raise CtlError(f'control plane "{name}" already exists; use --overwrite to replace it')
    if check:
        check_control_plane(url)
    if existing is not None:
        existing.url = url
    else:
        config.control_planes.append(ControlPlaneEntry(name, url))
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
    "remove",
    "resolve_address",
    "save",
    "switch",
]
