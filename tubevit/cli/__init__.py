"""The `tubevit` command line: a thin layer over library functions.

Each sub-command lives in its own module in this package and defines:

    NAME = "inspect"                 # the sub-command
    HELP = "one line for --help"
    def add_arguments(parser): ...   # argparse arguments
    def run(args) -> int: ...        # exit status

Modules are discovered, so adding a command means adding one file. Tests call the library
functions behind each command directly; the CLI only parses, calls, and prints.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _command_modules():
    package = sys.modules[__name__]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tubevit",
        description="TubeViT: sparse video tubes for joint image and video learning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tubevit.data.decode import BackendNotInstalled  # a missing optional decoder is the user's to fix

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, BackendNotInstalled) as err:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"tubevit {args.command}: error: {err}", file=sys.stderr)
        return 2
