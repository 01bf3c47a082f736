"""The contract between the agent and the control plane, and between control planes (KDS).

Both sides import these modules and never spell the contract themselves:

- ``names``: SDS secret names, SPIFFE and ``kuma://`` URIs, agent features, the SDS
  socket's file name, gRPC metadata keys;
- ``bootstrap``: ``POST /bootstrap``'s request and response as typed values;
- ``agent.proto`` and its generated ``agent_pb2`` / ``agent_pb2_grpc``: the agent channel;
- ``kds.proto`` (``kds_pb2``) and ``kds``: the global <-> zone sync: its messages, method
  paths, the metadata naming a zone and the labels of synced copies
  (``scripts/gen-proto`` regenerates every ``*_pb2``).

Importing this package loads nothing; import the modules you need.
"""
