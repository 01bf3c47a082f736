from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminRequest(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class AdminResponse(_message.Message):
    __slots__ = ("mesh", "name", "id", "status", "body", "content_type", "error")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    id: str
    status: int
    body: bytes
    content_type: str
    error: str
    def __init__(self, mesh: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[str] = ..., status: _Optional[int] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class AdminAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InsightReport(_message.Message):
    __slots__ = ("mesh", "name", "insight_json")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSIGHT_JSON_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    insight_json: str
    def __init__(self, mesh: _Optional[str] = ..., name: _Optional[str] = ..., insight_json: _Optional[str] = ...) -> None: ...

class InsightAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("mesh", "name", "reason")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    reason: str
    def __init__(self, mesh: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class SignCertificateRequest(_message.Message):
    __slots__ = ("mesh", "name", "csr_pem")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    csr_pem: bytes
    def __init__(self, mesh: _Optional[str] = ..., name: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class SignCertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_bundle_pem", "backend", "not_before_unix", "not_after_unix", "crl_pem")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_UNIX_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_bundle_pem: bytes
    backend: str
    not_before_unix: int
    not_after_unix: int
    crl_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_bundle_pem: _Optional[bytes] = ..., backend: _Optional[str] = ..., not_before_unix: _Optional[int] = ..., not_after_unix: _Optional[int] = ..., crl_pem: _Optional[bytes] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("mesh", "name", "features")
    MESH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    name: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mesh: _Optional[str] = ..., name: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentUpdate(_message.Message):
    __slots__ = ("identity", "names", "admin_request")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    ADMIN_REQUEST_FIELD_NUMBER: _ClassVar[int]
    identity: MeshIdentity
    names: NameTable
    admin_request: AdminRequest
    def __init__(self, identity: _Optional[_Union[MeshIdentity, _Mapping]] = ..., names: _Optional[_Union[NameTable, _Mapping]] = ..., admin_request: _Optional[_Union[AdminRequest, _Mapping]] = ...) -> None: ...

class MeshIdentity(_message.Message):
    __slots__ = ("mtls_enabled", "backend", "ca_fingerprint", "services", "generation")
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
    def __init__(self, mtls_enabled: _Optional[bool] = ..., backend: _Optional[str] = ..., ca_fingerprint: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., generation: _Optional[str] = ...) -> None: ...

class NameTable(_message.Message):
    __slots__ = ("version", "ttl_seconds", "records")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    ttl_seconds: int
    records: _containers.RepeatedCompositeFieldContainer[NameRecord]
    def __init__(self, version: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., records: _Optional[_Iterable[_Union[NameRecord, _Mapping]]] = ...) -> None: ...

class NameRecord(_message.Message):
    __slots__ = ("name", "ipv4", "ipv6")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    name: str
    ipv4: _containers.RepeatedScalarFieldContainer[str]
    ipv6: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., ipv4: _Optional[_Iterable[str]] = ..., ipv6: _Optional[_Iterable[str]] = ...) -> None: ...
