"""KDS authentication on the global CP (``--kds-auth cpToken``, the default): every call of a
zone CP carries a zone token of scope ``cp`` (``authorization: Bearer <token>``), minted by
this global CP (``kumadp ctl generate zone-token --zone Z --scope cp``) and verified with its
own keys; the token's ``Zone`` must be the zone the call claims (``client-id``).

Each refusal says which check failed: no token, a token that does not verify (expired,
revoked, not signed here, malformed, wrong scope), or a token of another zone.
``--kds-auth none`` (labs only) skips all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kumadp.cp.auth import token_from_metadata
from kumadp.cp.jwt import TokenError
from kumadp.cp.kds.zones import ZoneIdentity
from kumadp.cp.zone_tokens import ZoneTokens
from kumadp.xds.stream import Code, StreamRejected

log = logging.getLogger(__name__)

CP_TOKEN = "cpToken"
NONE = "none"
KDS_AUTH_TYPES = (CP_TOKEN, NONE)


def generate_hint(zone: str) -> str:
    return (
        f"start the zone CP with --kds-token-file (a token from `kumadp ctl generate "
        f"zone-token --zone {zone} --scope cp` on the global CP)"
    )


class ZoneTokenAuth:
    """The ``authenticate`` hook of ``KdsServer``."""

    def __init__(self, zone_tokens: ZoneTokens) -> None:
        self._tokens = zone_tokens

    async def __call__(self, identity: ZoneIdentity, metadata: Mapping[str, str]) -> None:
        zone = identity.zone
        token = token_from_metadata(metadata)
        if not token:
            raise StreamRejected(
                Code.UNAUTHENTICATED, f"zone {zone}: no zone token: {generate_hint(zone)}"
            )
        try:
            claims = await self._tokens.verify(token, scope="cp")
        except TokenError as exc:
            raise StreamRejected(
                Code.UNAUTHENTICATED, f"zone {zone}: invalid zone token: {exc}"
            ) from None
        if claims.zone != zone:
            raise StreamRejected(
                Code.PERMISSION_DENIED,
                f'zone token is for zone "{claims.zone}", but this control plane connects as '
                f'zone "{zone}" (client-id)',
            )


__all__ = ["CP_TOKEN", "KDS_AUTH_TYPES", "NONE", "ZoneTokenAuth", "generate_hint"]
