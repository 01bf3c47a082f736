"""KDS: the sync between a global control plane and its zone control planes.

One module per concern; nothing here imports the HTTP API, and the protocol itself is
``kumadp.xds`` (delta server, delta client, per-resource NACKs):

- ``mapping``: how a resource travels (key, content version, ``KumaResource``) and how its
  copy is named and labelled;
- ``catalog``: which types go which way, in dependency order, and the checks of the types
  without a parser;
- ``source``: what a CP sends, built from its store's change feed;
- ``receiver`` (+ ``zone_receiver``, ``global_receiver``): validate, write, NACK alone;
- ``server`` (global) and ``client`` (zone): the gRPC connection and its three methods;
  ``trust``: how the zone trusts the global CP's certificate;
- ``zones`` and ``zone_insights``: the global CP's view of its zones (claims, heartbeats,
  Zone and ZoneInsight);
- ``keys``: the public halves of the token signing keys, which the zones verify with.
"""
