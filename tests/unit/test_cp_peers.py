"""Several CP instances: the bootstrap's ADS cluster lists every live DP server (this one
first), and the agent reads them all back for its own channel."""

from __future__ import annotations

import yaml

from kumadp.agent.cp_channel import dp_server_from_bootstrap
from kumadp.cp.bootstrap import ads_endpoints


def test_ads_endpoints_this_instance_first_then_peers_once() -> None:
    endpoints = ads_endpoints(
        "10.0.0.1", 5678, ["10.0.0.2:5678", "10.0.0.1:5678", "bad", "[::1]:7"]
    )
    assert [e["endpoint"]["address"]["socket_address"] for e in endpoints] == [
        {"address": "10.0.0.1", "port_value": 5678},
        {"address": "10.0.0.2", "port_value": 5678},
        {"address": "::1", "port_value": 7},
    ]


def test_the_agent_reads_every_dp_server_of_the_bootstrap() -> None:
    endpoints = ads_endpoints("127.0.0.1", 5001, ["127.0.0.1:5002", "127.0.0.1:5003"])
    doc = {
        "static_resources": {
            "clusters": [
                {
                    "name": "ads_cluster",
                    "load_assignment": {"endpoints": [{"lb_endpoints": endpoints}]},
                }
            ]
        }
    }
    server = dp_server_from_bootstrap(yaml.safe_dump(doc).encode())
    assert server is not None
    assert server.addresses == ("127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003")
    assert server.address == "127.0.0.1:5001" and not server.tls
