"""``POST /bootstrap``: the request the agent sends and the response the CP gives, as typed
values with kuma-dp 2.x's JSON field names. The agent (``kumadp.agent.bootstrap``) and the
control plane (``kumadp.cp.bootstrap``) both go through ``to_json`` / ``from_json`` here.

``from_json`` raises ``WireError`` naming the field (``version.envoy.build: must be a
string``) and ignores fields it does not know: kuma-dp sends more than kumadp reads. Optional
parts the sender left out stay ``None`` and are left out again by ``to_json``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from kumadp.wire.json_fields import Fields, WireError, drop_none

__all__ = [
    "AggregateMetrics",
    "BootstrapRequest",
    "BootstrapResponse",
    "EnvoyInfo",
    "KumaDpVersion",
    "KumaSidecarConfiguration",
    "SidecarMetrics",
    "SidecarNetworking",
    "Version",
    "WireError",
]

PROXY_TYPE_DATAPLANE = "dataplane"


# -- request ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KumaDpVersion:
    version: str | None = None
    git_tag: str | None = None
    git_commit: str | None = None
    build_date: str | None = None

    def to_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "version": self.version,
                "gitTag": self.git_tag,
                "gitCommit": self.git_commit,
                "buildDate": self.build_date,
            }
        )

    @classmethod
    def from_fields(cls, f: Fields) -> KumaDpVersion:
        return cls(
            f.opt_text("version"), f.opt_text("gitTag"), f.opt_text("gitCommit"),
            f.opt_text("buildDate"),
        )  # fmt: skip


@dataclass(frozen=True)
class EnvoyInfo:
    """The Envoy the agent runs."""

    version: str | None = None
    build: str | None = None
    kuma_dp_compatible: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "version": self.version,
                "build": self.build,
                "kumaDpCompatible": self.kuma_dp_compatible,
            }
        )

    @classmethod
    def from_fields(cls, f: Fields) -> EnvoyInfo:
        return cls(f.opt_text("version"), f.opt_text("build"), f.opt_flag("kumaDpCompatible"))


@dataclass(frozen=True)
class Version:
    kuma_dp: KumaDpVersion | None = None
    envoy: EnvoyInfo | None = None
    dependencies: dict[str, str] | None = None  # e.g. {"coredns": "1.11.1"}

    def to_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "kumaDp": self.kuma_dp.to_json() if self.kuma_dp else None,
                "envoy": self.envoy.to_json() if self.envoy else None,
                "dependencies": dict(self.dependencies) if self.dependencies is not None else None,
            }
        )

    @classmethod
    def from_fields(cls, f: Fields) -> Version:
        kuma_dp, envoy = f.obj("kumaDp"), f.obj("envoy")
        return cls(
            KumaDpVersion.from_fields(kuma_dp) if kuma_dp else None,
            EnvoyInfo.from_fields(envoy) if envoy else None,
            f.text_map("dependencies") if f.obj("dependencies") is not None else None,
        )


@dataclass(frozen=True)
class BootstrapRequest:
    """What the agent tells the CP about itself."""

    mesh: str = ""
    name: str = ""
    proxy_type: str = PROXY_TYPE_DATAPLANE
    dataplane_token: str = ""
    dataplane_token_path: str = ""
    dataplane_resource: str = ""  # the Dataplane as a JSON *string*; "" = the CP knows it
    version: Version | None = None
    ca_cert: str = ""
    dynamic_metadata: dict[str, str] = field(default_factory=dict)
    dns_port: int = 0
    readiness_port: int = 0
    app_probe_proxy_disabled: bool = False
    operating_system: str = ""
    features: tuple[str, ...] = ()
    workdir: str = ""

    def to_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "mesh": self.mesh,
                "name": self.name,
                "proxyType": self.proxy_type,
                "dataplaneToken": self.dataplane_token,
                "dataplaneTokenPath": self.dataplane_token_path,
                "dataplaneResource": self.dataplane_resource,
                "version": self.version.to_json() if self.version else None,
                "caCert": self.ca_cert,
                "dynamicMetadata": dict(self.dynamic_metadata),
                "dnsPort": self.dns_port,
                "readinessPort": self.readiness_port,
                "appProbeProxyDisabled": self.app_probe_proxy_disabled,
                "operatingSystem": self.operating_system,
                "features": list(self.features),
                "workdir": self.workdir,
            }
        )

    @classmethod
    def from_json(cls, data: object) -> BootstrapRequest:
        f = Fields(data)
        version = f.obj("version")
        return cls(
            mesh=f.text("mesh"),
            name=f.text("name"),
            proxy_type=f.text("proxyType", PROXY_TYPE_DATAPLANE),
            dataplane_token=f.text("dataplaneToken"),
            dataplane_token_path=f.text("dataplaneTokenPath"),
            dataplane_resource=f.text("dataplaneResource"),
            version=Version.from_fields(version) if version else None,
            ca_cert=f.text("caCert"),
            dynamic_metadata=f.text_map("dynamicMetadata"),
            dns_port=f.integer("dnsPort"),
            readiness_port=f.integer("readinessPort"),
            app_probe_proxy_disabled=f.flag("appProbeProxyDisabled"),
            operating_system=f.text("operatingSystem"),
            features=f.texts("features"),
            workdir=f.text("workdir"),
        )


# -- response ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AggregateMetrics:
    """An application metrics endpoint the agent merges into its own page."""

    name: str = ""
    address: str = ""
    port: int = 0
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "port": self.port, "path": self.path}

    @classmethod
    def from_fields(cls, f: Fields) -> AggregateMetrics:
        return cls(f.text("name"), f.text("address"), f.integer("port"), f.text("path"))


@dataclass(frozen=True)
class SidecarNetworking:
    address: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address}


@dataclass(frozen=True)
class SidecarMetrics:
    aggregate: tuple[AggregateMetrics, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"aggregate": [a.to_json() for a in self.aggregate]}


@dataclass(frozen=True)
class KumaSidecarConfiguration:
    networking: SidecarNetworking | None = None
    metrics: SidecarMetrics | None = None

    def to_json(self) -> dict[str, Any]:
        return drop_none(
            {
                "networking": self.networking.to_json() if self.networking else None,
                "metrics": self.metrics.to_json() if self.metrics else None,
            }
        )

    @classmethod
    def from_fields(cls, f: Fields) -> KumaSidecarConfiguration:
        networking, metrics = f.obj("networking"), f.obj("metrics")
        aggregate = metrics.obj_list("aggregate") if metrics else []
        return cls(
            SidecarNetworking(networking.text("address")) if networking else None,
            SidecarMetrics(tuple(map(AggregateMetrics.from_fields, aggregate)))
            if metrics
            else None,
        )


@dataclass(frozen=True)
class BootstrapResponse:
    """The CP's answer: Envoy's bootstrap (YAML, base64 in JSON) and the agent's settings."""

    bootstrap_yaml: bytes
    kuma_sidecar_configuration: KumaSidecarConfiguration = KumaSidecarConfiguration()

    def to_json(self) -> dict[str, Any]:
        return {
            "bootstrap": base64.b64encode(self.bootstrap_yaml).decode(),
            "kumaSidecarConfiguration": self.kuma_sidecar_configuration.to_json(),
        }

    @classmethod
    def from_json(cls, data: object) -> BootstrapResponse:
        f = Fields(data)
        encoded = f.opt_text("bootstrap")
        if encoded is None:
            raise WireError("bootstrap", "required")
        try:
            yaml_bytes = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise WireError("bootstrap", "must be base64") from None
        sidecar = f.obj("kumaSidecarConfiguration")
        if sidecar is None:
            return cls(yaml_bytes)
        return cls(yaml_bytes, KumaSidecarConfiguration.from_fields(sidecar))
