"""The ``kumadp`` command: the composition of the sub-command modules. Parsing only."""

from __future__ import annotations

import sys

import typer

from kumadp import __version__

app = typer.Typer(
    name="kumadp",
    help="kumadp: a data-plane agent for Kuma-style service meshes, and its control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("version")
def version() -> None:
    """Print the kumadp version."""
    typer.echo(f"kumadp {__version__}")


# sub-command -> the module that registers it (``register(app)``); importing only the one
# a command line names keeps ``kumadp run``'s start-up free of the control plane's and ctl's
# imports (the resource registry, every policy model).
_COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("run",),
    "cp": ("cp",),
    "ctl": ("ctl", "ctl_zones", "ctl_zone_proxies"),  # the last two add to ctl's groups
    "install": ("tproxy",),
    "uninstall": ("tproxy",),
    "wait": ("wait",),
}


def _register_subcommands(argv: list[str] | None = None) -> None:
    """Register the sub-command ``argv`` names, or all of them (help, completion, a typo).
    Each module exposes ``register(app)``; nothing imports the CLI, and the CLI stays a thin
    layer over the packages."""
    import importlib

    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    wanted = _COMMANDS.get(words[0]) if words else None
    groups = [wanted] if wanted else list(_COMMANDS.values())
    names = list(dict.fromkeys(name for group in groups for name in group))
    for name in names:
        importlib.import_module(f"kumadp.cli.{name}").register(app)


def main() -> None:
    _register_subcommands()
    app()


if __name__ == "__main__":
    main()
