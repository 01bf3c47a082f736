"""The ``kumadp`` command: the composition of the sub-command modules. Parsing only."""

from __future__ import annotations

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


def _register_subcommands() -> None:
    # Each sub-command module exposes register(app); imported here so that nothing imports
    # the CLI and the CLI stays a thin layer over the packages.
    from kumadp.cli import cp, ctl, ctl_zone_proxies, run, tproxy

    run.register(app)
    cp.register(app)
    ctl.register(app)
    ctl_zone_proxies.register(ctl.inspect_app)
    tproxy.register(app)
    from kumadp.cli import wait

    wait.register(app)


def main() -> None:
    _register_subcommands()
    app()


if __name__ == "__main__":
    main()
