from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message

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
