"""`python -m lib.cli`: every module in this package adds its commands to one group."""

import importlib
import pkgutil

from lib.cli.base import cli

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "__main__"}:
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    cli(prog_name="python -m lib.cli")
