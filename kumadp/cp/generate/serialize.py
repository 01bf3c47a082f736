"""Envoy resources as plain data / YAML: for golden files, debugging and the ``_config`` API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

# The typed configs packed into Any fields must be in the default descriptor pool for
# MessageToDict to unpack them: importing the configurers imports their modules.
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from kumadp.cp.generate import clusters, listeners  # noqa: F401
from kumadp.cp.generate.resource_set import name_of
from kumadp.xds.types import ADS_ORDER


def _plain(value: Any) -> Any:
    # MessageToDict hands back OrderedDicts for unpacked ``Any`` fields; YAML wants dicts.
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def resource_to_dict(resource: Message) -> dict[str, Any]:
    """JSON-style plain dict (camelCase names, ``Any`` unpacked with its ``@type``)."""
    as_dict: dict[str, Any] = _plain(MessageToDict(resource))
    return as_dict


def _type_order(url: str) -> tuple[int, str]:
    return (ADS_ORDER.index(url) if url in ADS_ORDER else len(ADS_ORDER), url)


def resources_to_yaml(resources: Mapping[str, Sequence[Message]]) -> str:
    """YAML of type URL -> resources, types in ADS order, resources sorted by name."""
    doc = {
        url: [resource_to_dict(r) for r in sorted(resources[url], key=name_of)]
        for url in sorted(resources, key=_type_order)
    }
    text: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return text
