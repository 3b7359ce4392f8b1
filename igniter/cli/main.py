"""The ``igniter`` command group. Each pipeline stage registers its commands from its own module.

Command modules are imported only when their command runs (a lazy group): `igniter provision` does not pay for
tritonclient/grpc, `igniter serve` not for pulp/xgboost.
"""

from __future__ import annotations

import importlib

import click

from igniter import __version__

# command name -> (module, attribute)
_COMMANDS = {
    "serve": ("igniter.cli.serve", "serve"),
    "infer": ("igniter.cli.serve", "infer"),
    "profile": ("igniter.cli.profile", "profile"),
    "import-profiles": ("igniter.cli.profile", "import_profiles"),
    "fit": ("igniter.cli.model", "fit"),
    "predict": ("igniter.cli.model", "predict"),
    "provision": ("igniter.cli.provision", "provision"),
    "apply": ("igniter.cli.deploy", "apply"),
    "status": ("igniter.cli.deploy", "status"),
    "down": ("igniter.cli.deploy", "down"),
    "demo": ("igniter.cli.demo", "demo"),
    "replay": ("igniter.cli.replay", "replay"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="igniter")
def cli() -> None:
    """Interference-aware provisioning for NVIDIA Triton Inference Server."""


def main() -> None:
    cli()
