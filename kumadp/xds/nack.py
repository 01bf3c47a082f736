"""A NACK that names the resources it rejects (delta xDS), and how to read one back.

xDS reports a rejection as a ``google.rpc.Status`` in ``error_detail``; its ``message`` is
for humans (Envoy puts its validation errors there). A client that rejects only some
resources of a response (the KDS receiver does: one bad resource must not stop the sync of
the others) also packs a ``google.rpc.BadRequest`` into ``details``, one field violation per
rejected resource: ``field`` = the resource name, ``description`` = why. A NACK without it
rejects the whole response.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.rpc import code_pb2, error_details_pb2, status_pb2


def nack_status(message: str, failed: Mapping[str, str] | None = None) -> status_pb2.Status:
    """The ``error_detail`` of a NACK; ``failed`` (name -> reason) names the resources."""
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
    if failed:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=reason)
                for name, reason in sorted(failed.items())
            ]
        )
        status.details.add().Pack(bad)
    return status


def failed_resources(status: status_pb2.Status) -> dict[str, str]:
    """The resources a NACK names (name -> reason); empty: the whole response."""
    failed: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for violation in bad.field_violations:
                if violation.field:
                    failed[violation.field] = violation.description
    return failed


def describe(status: status_pb2.Status) -> str:
    """One line: the message, and the resources named, if any."""
    failed = failed_resources(status)
    if not failed:
        return status.message
    names = ", ".join(sorted(failed))
    return f"{status.message} (resources: {names})" if status.message else f"resources: {names}"
