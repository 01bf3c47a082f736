"""The xDS protocol, shared by the CP's ADS, the agent's SDS and (next) KDS.

Nothing here knows how configuration is generated. Importing this package loads nothing
heavy; import the modules you need:

- ``types``: type URLs and the ADS send order;
- ``snapshot``: immutable, consistency-checked snapshots with content-hash versions;
- ``cache``: the snapshot cache (per-node wake-ups, no polling);
- ``server``: state-of-the-world ADS protocol logic, tested with a fake stream;
- ``grpc_adapter``: the only code that touches ``grpc.aio``.
"""
