"""The mesh's ``routing.localityAwareLoadBalancing`` on retries: a request to a service with
instances in other zones, whose retry policy (MeshRetry) has no host selection of its own,
retries first on another local instance, then in another zone.

Local instances are at priority 0 and the other zones at priority 1
(``clusters.service_load_assignment``), and Envoy moves traffic between priorities only as
the health checks (``crosszone.eject_fast``) mark hosts unhealthy. Until they do, a request
to a dead local instance would be retried on local instances only. With Envoy's
``previous_hosts`` predicate a retry avoids the hosts already tried, and with
``previous_priorities`` (every second attempt) the next retries leave the priority tried:
killing every local instance then costs next to no failed request while the health checks
catch up. Runs after the MeshRetry plug-in, on the HTTP routes it gave a retry policy.
"""

from __future__ import annotations

from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)

from kumadp.cp.generate.context import Context
from kumadp.cp.generate.policies.edit import configure, edit_hcm, outbound_targets, route_actions
from kumadp.cp.generate.policies.retry import PREVIOUS_HOSTS, PREVIOUS_PRIORITIES
from kumadp.cp.generate.resource_set import ResourceSet
from kumadp.resources.model import MESH_TYPE

UPDATE_FREQUENCY = 2  # two attempts in a priority (the first and one retry), then the next
HOST_SELECTION_ATTEMPTS = 3


def retry_elsewhere(policy: rc.RetryPolicy) -> None:
    """Retries avoid the hosts, then the priority, already tried."""
    host = policy.retry_host_predicate.add(name=PREVIOUS_HOSTS)
    host.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
    policy.host_selection_retry_max_attempts = HOST_SELECTION_ATTEMPTS
    policy.retry_priority.name = PREVIOUS_PRIORITIES
    policy.retry_priority.typed_config.Pack(
        previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=UPDATE_FREQUENCY)
    )


def _listener(listener: Listener) -> None:
    def hcm(manager: hcm_pb2.HttpConnectionManager) -> None:
        for action in route_actions(manager):
            policy = action.retry_policy
            if not action.HasField("retry_policy") or policy.retry_host_predicate:
                continue  # no retries, or a host selection the user chose
            if not policy.HasField("retry_priority"):
                retry_elsewhere(policy)

    edit_hcm(listener, hcm)


class LocalityFailoverPlugin:
    """Not a policy type's plug-in: the mesh's own routing (its ``policy_type`` says so)."""

    policy_type = MESH_TYPE

    def apply(self, ctx: Context, resources: ResourceSet) -> None:
        view = ctx.view
        if not view.locality_aware or not view.remote:
            return
        for service, target in outbound_targets(view, resources).items():
            if not target.http or service not in view.remote:
                continue
            for name in target.listeners:
                configure(view, resources, Listener, name, (MESH_TYPE, "failover"), _listener)


__all__ = ["LocalityFailoverPlugin", "retry_elsewhere"]
