"""The contract between the agent and the control plane (and, next, between CPs).

Both sides import these modules and never spell the contract themselves:

- ``names``: SDS secret names, SPIFFE and ``kuma://`` URIs, agent features, the SDS
  socket's file name, gRPC metadata keys;
- ``bootstrap``: ``POST /bootstrap``'s request and response as typed values;
- ``agent.proto`` and its generated ``agent_pb2`` / ``agent_pb2_grpc``: the agent channel
  (``scripts/gen-proto`` regenerates them).

Importing this package loads nothing; import the modules you need.
"""
