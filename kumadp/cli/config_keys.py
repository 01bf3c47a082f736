"""What ``--config-file`` says about the keys of a Kuma configuration file that kumadp does
not take: a Kuma setting kumadp has no feature for, or an unknown key (a typo, with the
nearest known key), each one warning line; and the Kuma settings it refuses (file or
environment), because ignoring them would weaken what the user asked for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kumadp.cli.kuma_keys import Refused

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


@dataclass(frozen=True)
class KnownKeys:
    """The keys of one command's configuration file."""

    taken: frozenset[str]  # a parameter reads it
    kuma: frozenset[str] = frozenset()  # Kuma's, without a kumadp feature (with subtrees)
    refused: tuple[Refused, ...] = ()

    def below(self, path: str) -> bool:
        """A taken or refused key is under ``path``: look inside it."""
        prefix = f"{path}." if path else ""
        return any(k.startswith(prefix) for k in self.taken) or any(
            r.key.startswith(prefix) for r in self.refused
        )

    def is_kuma(self, path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:n]) in self.kuma for n in range(1, len(parts) + 1))

    def suggest(self, path: str) -> str | None:
        """The known key nearest to a typo."""
        import difflib

        every = {*self.taken, *self.kuma, *(r.key for r in self.refused)}
        near = difflib.get_close_matches(path, sorted(every), n=1, cutoff=0.8)
        return near[0] if near else None


def notes(doc: Mapping[str, Any], keys: KnownKeys) -> list[str]:
    """One line for each key of ``doc`` that kumadp does not take."""
    found: list[str] = []
    refused = {r.key for r in keys.refused}

    def walk(node: Any, path: str) -> None:
        if path in keys.taken or path in refused or node in (None, "", [], {}):
            return  # taken, refused (``refusals``) or set to nothing
        if not path or keys.below(path):
            if not isinstance(node, dict):
                found.append(f"{path}: not a mapping (Kuma's layout has keys under it): ignored")
                return
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif keys.is_kuma(path):
            found.append(f"{path}: a Kuma setting kumadp has no feature for: ignored")
        else:
            near = keys.suggest(path)
            hint = f' (did you mean "{near}"?)' if near else ""
            found.append(f"{path}: unknown key: ignored{hint}")

    walk(doc, "")
    return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    word = str(value).strip()
    if word.lower() in _TRUE:
        return "true"
    if word.lower() in _FALSE:
        return "false"
    return word


def _lookup(doc: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def refusals(
    doc: Mapping[str, Any], environ: Mapping[str, str], refused: Iterable[Refused], file: str = ""
) -> list[str]:
    """One line for each refused setting in the environment or (each line starting with
    ``file``) the file; the environment wins over the file, as for every setting."""
    found: list[str] = []
    for item in refused:
        if item.env in environ:
            value, where = _text(environ[item.env]), item.env
        else:
            present, raw = _lookup(doc, item.key)
            if not present:
                continue
            value, where = _text(raw), file + item.key
        if value and value not in item.honoured:
            shown = value if len(value) <= 40 else value[:40] + "..."
            found.append(f"{where}: {shown!r} is not supported by kumadp ({item.why})")
    return found


__all__ = ["KnownKeys", "notes", "refusals"]
