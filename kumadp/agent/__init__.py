"""The data-plane agent (``kumadp run``): one module per concern. Importing the package
imports nothing else: take what you need from its modules.

- ``run``: the composition root, ``run_agent`` (owns the shutdown sequence);
- ``config``: ``AgentConfig`` and its local checks; ``cp_trust``: CP addresses and how the
  DP server is trusted; ``bootstrap``: the CP's ``POST /bootstrap`` client;
- ``envoy``: finding the binary, its version, and the Envoy process component;
- ``admin``: a small client of Envoy's admin API; ``http``: the agent's HTTP clients (the one
  place httpx is imported); ``httpserver``: the small server behind ``/ready`` and
  ``/metrics``;
- ``readiness``: the ``/ready`` state, its checker and its server;
- ``cp_channel``, ``cp_watch``: the gRPC ``AgentChannel`` to the CP's DP server (``Leave``,
  ``Watch``, ``SignCertificate``); ``insight``: the agent's part of the DataplaneInsight;
- ``certs``, ``rotation``, ``sds``: the mesh certificate and the SDS server;
- ``nametable``, ``dns``, ``dns_answer``, ``dns_forward``: the ``.mesh`` resolver;
- ``metrics``, ``agent_metrics``, ``prometheus``: the merged Prometheus page;
- ``identity``: the dataplane resource / name and mesh, and the token, checked locally;
- ``drain``: drain until idle; ``workdir``: the work directory; ``errors``: the errors.
"""
