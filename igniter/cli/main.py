"""The ``igniter`` command group. Each pipeline stage registers its commands from its own module.

Command modules are imported only when their command runs (a lazy group): `igniter provision` does not pay for
tritonclient/grpc, `igniter serve` not for pulp/xgboost.
"""

from __future__ import annotations

import importlib
import sys

import click

from igniter import __version__
from igniter.cli.common import EXIT_INTERNAL_ERROR, PATH_ERRNOS, fail, internal_error, path_error, usage_error
from igniter.errors import UserError

# command name -> (module, attribute)
_COMMANDS = {
    "serve": ("igniter.cli.serve", "serve"),
    "infer": ("igniter.cli.serve", "infer"),
    "profile": ("igniter.cli.profile", "profile"),
    "import-profiles": ("igniter.cli.profile", "import_profiles"),
    "fit": ("igniter.cli.model", "fit"),
    "predict": ("igniter.cli.model", "predict"),
    "provision": ("igniter.cli.provision", "provision"),
    "capacity": ("igniter.cli.capacity", "capacity"),
    "apply": ("igniter.cli.deploy", "apply"),
    "status": ("igniter.cli.deploy", "status"),
    "down": ("igniter.cli.deploy", "down"),
    "demo": ("igniter.cli.demo", "demo"),
    "replay": ("igniter.cli.replay", "replay"),
    "export": ("igniter.cli.export", "export"),
    "watch": ("igniter.cli.watch", "watch"),
}


class LazyGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with every error (usage, user, internal) in the one-line form of igniter.cli.common."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.NoArgsIsHelpError as err:  # a bare `igniter`: its help, as click prints it
            err.show()
            sys.exit(err.exit_code)
        except click.ClickException as err:
            fail(usage_error(err), as_json)
        except UserError as err:
            fail(err, as_json)
        except OSError as err:
            if err.errno in PATH_ERRNOS:
                fail(path_error(err), as_json)
            fail(internal_error(err), as_json, EXIT_INTERNAL_ERROR)
        except Exception as err:  # noqa: BLE001 - the last resort: never a traceback for users
            fail(internal_error(err), as_json, EXIT_INTERNAL_ERROR)
        sys.exit(code if isinstance(code, int) else 0)

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
