import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceMeta(_message.Message):
    __slots__ = ("name", "mesh", "version", "labels", "type")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    mesh: str
    version: str
    labels: _containers.ScalarMap[str, str]
    type: str
    def __init__(self, name: _Optional[str] = ..., mesh: _Optional[str] = ..., version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., type: _Optional[str] = ...) -> None: ...

class KumaResource(_message.Message):
    __slots__ = ("meta", "spec_json")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    meta: ResourceMeta
    spec_json: str
    def __init__(self, meta: _Optional[_Union[ResourceMeta, _Mapping]] = ..., spec_json: _Optional[str] = ...) -> None: ...

class ZoneHealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ZoneHealthCheckResponse(_message.Message):
    __slots__ = ("interval",)
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class IntermediateCARequest(_message.Message):
    __slots__ = ("mesh", "backend", "csr_pem", "crl_pem")
    MESH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    mesh: str
    backend: str
    csr_pem: bytes
    crl_pem: bytes
    def __init__(self, mesh: _Optional[str] = ..., backend: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., crl_pem: _Optional[bytes] = ...) -> None: ...

class IntermediateCAResponse(_message.Message):
    __slots__ = ("certificate_pem", "root_pem", "root_crl_pem")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    ROOT_PEM_FIELD_NUMBER: _ClassVar[int]
    ROOT_CRL_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    root_pem: bytes
    root_crl_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., root_pem: _Optional[bytes] = ..., root_crl_pem: _Optional[bytes] = ...) -> None: ...
