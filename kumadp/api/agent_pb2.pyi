from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class LeaveRequest(_message.Message):
    __slots__ = ("mesh", "name", "reason")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    reason: str
    def __init__(
        self, mesh: str | None = ..., name: str | None = ..., reason: str | None = ...
    ) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: bool | None = ...) -> None: ...

class SignCertificateRequest(_message.Message):
    __slots__ = ("csr_pem", "mesh", "name")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    csr_pem: bytes
    def __init__(
        self, mesh: str | None = ..., name: str | None = ..., csr_pem: bytes | None = ...
    ) -> None: ...

class SignCertificateResponse(_message.Message):
    __slots__ = ("backend", "ca_bundle_pem", "certificate_pem", "not_after_unix", "not_before_unix")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_bundle_pem: bytes
    backend: str
    not_before_unix: int
    not_after_unix: int
    def __init__(
        self,
        certificate_pem: bytes | None = ...,
        ca_bundle_pem: bytes | None = ...,
        backend: str | None = ...,
        not_before_unix: int | None = ...,
        not_after_unix: int | None = ...,
    ) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("features", "mesh", "name")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self, mesh: str | None = ..., name: str | None = ..., features: _Iterable[str] | None = ...
    ) -> None: ...

class AgentUpdate(_message.Message):
    __slots__ = ("identity", "names")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    identity: MeshIdentity
    names: NameTable
    def __init__(
        self,
        identity: MeshIdentity | _Mapping | None = ...,
        names: NameTable | _Mapping | None = ...,
    ) -> None: ...

class MeshIdentity(_message.Message):
    __slots__ = ("backend", "ca_fingerprint", "generation", "mtls_enabled", "services")
    MTLS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    mtls_enabled: bool
    backend: str
    ca_fingerprint: str
    services: _containers.RepeatedScalarFieldContainer[str]
    generation: str
    def __init__(
        self,
        mtls_enabled: bool | None = ...,
        backend: str | None = ...,
        ca_fingerprint: str | None = ...,
        services: _Iterable[str] | None = ...,
        generation: str | None = ...,
    ) -> None: ...

class NameTable(_message.Message):
    __slots__ = ("records", "ttl_seconds", "version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    ttl_seconds: int
    records: _containers.RepeatedCompositeFieldContainer[NameRecord]
    def __init__(
        self,
        version: str | None = ...,
        ttl_seconds: int | None = ...,
        records: _Iterable[NameRecord | _Mapping] | None = ...,
    ) -> None: ...

class NameRecord(_message.Message):
    __slots__ = ("ipv4", "ipv6", "name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    name: str
    ipv4: _containers.RepeatedScalarFieldContainer[str]
    ipv6: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        name: str | None = ...,
        ipv4: _Iterable[str] | None = ...,
        ipv6: _Iterable[str] | None = ...,
    ) -> None: ...
