"""The ``igniter`` command group. Each pipeline stage registers its commands from its own module."""

from __future__ import annotations

import importlib

import click

from igniter import __version__

# (module, command attribute names) — a stage's CLI lives beside the others, imported lazily so that a
# missing optional piece never breaks `igniter --help`.
_COMMAND_MODULES = {
    "igniter.cli.serve": ["serve", "infer"],
    "igniter.cli.profile": ["profile", "import_profiles"],
    "igniter.cli.model": ["fit", "predict"],
    "igniter.cli.provision": ["provision"],
    "igniter.cli.deploy": ["apply", "status", "down"],
    "igniter.cli.demo": ["demo"],
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="igniter")
def cli() -> None:
    """Interference-aware provisioning for NVIDIA Triton Inference Server."""


def _register() -> None:
    for module_name, names in _COMMAND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # stage not built yet
                continue
            raise
        for name in names:
            command = getattr(module, name, None)
            if command is not None:
                cli.add_command(command)


_register()


def main() -> None:
    cli()
