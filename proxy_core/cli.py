"""The command line of a program built on proxy_core: ``serve`` and ``check`` here; plugins add their
own sub-commands through the ``proxy_core.commands`` entry-point group (a function that receives the
sub-parsers). The embedding application names the program and gives its defaults, for example::

    def main() -> int:
        return proxy_core.cli.main(prog="acme-proxy", defaults={"database": {"url": "sqlite:///acme.db"}})
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from .app import build_stages, make_context
from .config import ConfigError, load_config
from .logs import setup_logging
from .redact import redact
from .registry import UnknownStageError
from .server import ListenError

COMMANDS_GROUP = "proxy_core.commands"
DEFAULT_CONFIG = "proxy.toml"


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("PROXY_CONFIG", DEFAULT_CONFIG),
        help="path to proxy.toml (default: $PROXY_CONFIG or ./proxy.toml)",
    )


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    config = load_config(args.config, defaults=args.config_defaults)
    setup_logging(config.server.log_level, config.server.log_format)
    serve(args.config, config)
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config, defaults=args.config_defaults)
    stages = build_stages(make_context(config, checking=True))
    names = ", ".join(stage.name or type(stage).__name__ for stage in stages) or "none"
    print(f"{args.config}: OK ({len(stages)} stages: {names})")
    return 0


def build_parser(
    prog: str = "proxy",
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    description: str = "Streaming reverse proxy with a stage pipeline.",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.set_defaults(config_defaults=defaults or {})
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the configured pipeline")
    _config_option(serve)
    serve.set_defaults(func=_serve)
    check = commands.add_parser("check", help="load, validate and construct every stage without serving")
    _config_option(check)
    check.set_defaults(func=_check)
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] != ep.value.split(".")[0]:
                continue  # a plugin whose optional dependencies are not installed: no command for it
            raise
        register(commands, _config_option)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "proxy",
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    description: str = "Streaming reverse proxy with a stage pipeline.",
) -> int:
    """Run the command line; ``prog`` names the program in help and errors, ``defaults`` are the
    application's defaults for shared sections of the config (the file still wins)."""
    args = build_parser(prog, defaults, description).parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, UnknownStageError, ListenError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
