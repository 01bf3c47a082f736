"""Command-line forms of Go's pflag (what kuma-dp and kuma-cp parse with), on typer commands:

- a boolean flag takes ``--flag``, ``--flag=true`` and ``--flag=false`` (also ``1``, ``0``,
  ``t``, ``f``, any case), besides our ``--no-flag``;
- a ``key=value`` map flag (``-v/--dataplane-var``) takes ``-v a=1,b=2`` as two entries
  (``split_pairs``);
- ``--config-file FILE`` (YAML in Kuma's configuration layout) gives defaults below the
  environment and the flags, as Kuma loads its configuration (``PflagCommand`` with a
  ``Layout``: where each of the command's parameters lives in Kuma's file, and Kuma's other
  keys); a key it does not take is one warning line on stderr, a Kuma setting kumadp
  refuses (in the file or the environment) one error line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import typer
import yaml
from typer.core import TyperCommand

from kumadp.cli.config_keys import KnownKeys, notes, refusals

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


@dataclass(frozen=True)
class Layout:
    """A command's configuration file: parameter name -> its path(s) in Kuma's file (e.g.
    "controlPlane.url"; of several, the first present wins), and Kuma's keys no parameter
    takes (``KnownKeys.kuma`` and ``.refused``)."""

    params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keys: KnownKeys = field(default_factory=lambda: KnownKeys(frozenset()))


def _boolean_flags(command: Any) -> dict[str, str]:
    """``--flag`` -> ``--no-flag`` for the command's on/off flags (``--flag`` alone for a
    flag without an off form, which ``=false`` then simply leaves out)."""
    flags: dict[str, str] = {}
    for param in command.params:
        if not getattr(param, "is_bool_flag", False):
            continue
        secondary = list(getattr(param, "secondary_opts", []) or [])
        for opt in param.opts:
            if opt.startswith("--"):
                flags[opt] = secondary[0] if secondary else ""
    return flags


def rewrite_booleans(args: list[str], flags: Mapping[str, str]) -> list[str]:
    """``--flag=false`` -> ``--no-flag``, ``--flag=true`` -> ``--flag`` for ``flags``; an
    invalid value is kept, so that the parser names it."""
    out: list[str] = []
    for n, arg in enumerate(args):
        if arg == "--":
            out.extend(args[n:])
            break
        name, sep, value = arg.partition("=")
        if sep and name in flags:
            word = value.strip().lower()
            if word in _TRUE:
                out.append(name)
                continue
            if word in _FALSE:
                if flags[name]:
                    out.append(flags[name])
                continue
        out.append(arg)
    return out


def split_pairs(values: Iterable[str]) -> list[str]:
    """pflag's ``key=value`` map: each value is a comma-separated list (CSV quoting) of
    pairs. A part without ``=`` belongs to the value before it, so ``a=1,2`` stays one
    pair (kumadp took it whole before; pflag would refuse it)."""
    out: list[str] = []
    for value in values:
        try:
            parts = next(csv.reader([value], skipinitialspace=False))
        except (csv.Error, StopIteration):
            parts = [value]
        for part in parts:
            if "=" in part or not out:
                out.append(part)
            else:
                out[-1] = f"{out[-1]},{part}"
    return out


def load_config_file(path: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; a bad file exits with one line."""
    from kumadp.cli.common import fail

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        fail(f"--config-file: cannot read {path}: {exc.strerror or exc}")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        fail(f"--config-file: {path} is not valid YAML: {' '.join(str(exc).split())}")
    if not isinstance(doc, dict):
        fail(f"--config-file: {path} must hold a YAML mapping")
    return doc


def read_layout(doc: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """The parameters ``layout`` finds in the configuration ``doc``: {parameter: value}."""
    found: dict[str, Any] = {}
    for param, paths in layout.params.items():
        for dotted in paths:
            node: Any = doc
            for key in dotted.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            if node is not None and node != "":
                found[param] = node
                break
    return found


class PflagCommand(TyperCommand):
    """A typer command that also parses pflag's boolean forms, and, when its class has a
    ``layout`` (``with_layout``), reads ``--config-file`` into the defaults."""

    layout: ClassVar[Layout | None] = None

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        args = rewrite_booleans(list(args), _boolean_flags(self))
        path = _config_file(args) if self.layout else None
        doc = load_config_file(path) if path else {}
        if self.layout and not _asks_for_help(args):
            _check_keys(path, doc, self.layout.keys)
        if path and self.layout:
            values = read_layout(doc, self.layout)
            multiple = {p.name for p in self.params if getattr(p, "multiple", False)}
            defaults = {k: _flag_text(v) for k, v in values.items()}
            for name in multiple & set(defaults):
                if not isinstance(defaults[name], list):
                    defaults[name] = [defaults[name]]
            extra["default_map"] = defaults
        return super().make_context(info_name, args, parent, **extra)


def with_layout(layout: Layout) -> type[PflagCommand]:
    """A ``PflagCommand`` class whose ``--config-file`` is read with ``layout``."""
    return type("KumaConfigCommand", (PflagCommand,), {"layout": layout})


def _check_keys(path: str | None, doc: Mapping[str, Any], keys: KnownKeys) -> None:
    """Warn about each file key kumadp does not take; fail on a refused Kuma setting."""
    from kumadp.cli.common import fail

    where = f"--config-file {path}: " if path else ""
    for note in notes(doc, keys):
        typer.echo(f"Warning: {where}{note}", err=True)
    refused = refusals(doc, os.environ, keys.refused, file=where)
    if refused:
        fail(refused[0])


def _asks_for_help(args: list[str]) -> bool:
    return any(a in ("--help", "-h") for a in args[: args.index("--") if "--" in args else None])


def _flag_text(value: Any) -> Any:
    """A file value as the parameter parses it (lists stay lists; maps become k=v)."""
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _config_file(args: list[str]) -> str | None:
    for n, arg in enumerate(args):
        if arg == "--":
            return None
        if arg in ("--config-file", "-c") and n + 1 < len(args):
            return args[n + 1]
        if arg.startswith("--config-file="):
            return arg.partition("=")[2]
    return None


__all__ = [
    "Layout",
    "PflagCommand",
    "load_config_file",
    "read_layout",
    "rewrite_booleans",
    "split_pairs",
    "with_layout",
]
