"""The xDS protocol, shared by the CP's ADS, the agent's SDS and KDS (``kumadp.cp.kds``).

Nothing here knows how configuration is generated. Importing this package loads nothing
heavy; import the modules you need:

- ``types``: type URLs, the ADS send order, a resource's type URL and name;
- ``snapshot``: immutable, consistency-checked snapshots with content-hash versions
  (``consistency``: the Envoy cross-references they are checked for);
- ``cache``: the snapshot cache (per-node wake-ups, no polling);
- ``stream``: what the servers see of a stream, and ``StreamRejected``;
- ``server``: state-of-the-world protocol logic (ADS; SDS with ``SotwOptions``);
- ``delta``: incremental protocol logic (per-resource versions, only changes sent);
- ``delta_client``: the receiving end of a delta stream; ``nack``: per-resource NACKs;
- ``grpc_adapter``: the only code that touches ``grpc.aio``.
"""
