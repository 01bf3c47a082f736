"""Transparent proxy: iptables rules that send an application's TCP (and DNS) traffic through
its Envoy, as ``kumactl install transparent-proxy`` does for Kuma.

Public surface::

    text = rules_text(TransparentProxyConfig(kuma_dp_user="1337"))   # pure, for --dry-run
    install(config); uninstall()                                      # root, idempotent
"""

from kumadp.tproxy.install import (
    Installer,
    Iptables,
    TransparentProxyError,
    find_iptables,
    install,
    uninstall,
)
from kumadp.tproxy.rules import (
    CHAINS,
    RulesError,
    TransparentProxyConfig,
    install_text,
    installed,
    parse_ports,
    resolve_uid,
    rules_text,
    uninstall_text,
)

__all__ = [
    "CHAINS",
    "Installer",
    "Iptables",
    "RulesError",
    "TransparentProxyConfig",
    "TransparentProxyError",
    "find_iptables",
    "install",
    "install_text",
    "installed",
    "parse_ports",
    "resolve_uid",
    "rules_text",
    "uninstall",
    "uninstall_text",
]
