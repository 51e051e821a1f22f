"""``shmastra-cloud template build [--tag VERSION] [--dry-run]``: builds the E2B template from
``e2b-template/`` (named ``shmastra``, tagged with the template's VERSION unless told otherwise).
``--dry-run`` prints the build's steps without calling E2B. Registered through the
``proxy_core.commands`` entry-point group. E2B's credentials come from the environment
(``E2B_API_KEY``; ``E2B_API_URL`` / ``E2B_DOMAIN`` to point elsewhere), as the SDK reads them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2b import AsyncTemplate
from e2b.exceptions import AuthenticationException, BuildException, SandboxException, TemplateException
from e2b.template.logger import LogEntry

from .definition import SHMASTRA_REF, SHMASTRA_REPO, Source, describe, template_definition
from .prepare import BUNDLED_TEMPLATE_DIR, TemplateError, template_version

DEFAULT_NAME = "shmastra"


def register(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    template = commands.add_parser("template", help="build the sandbox template")
    actions = template.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build the E2B template from e2b-template/")
    build.add_argument("--tag", help="the tag to build (default: the template's VERSION)")
    build.add_argument("--dry-run", action="store_true", help="print the build's steps; call nothing")
    build.add_argument("--name", default=DEFAULT_NAME, help="the template's name (default: %(default)s)")
    build.add_argument(
        "--template-dir", type=Path, default=BUNDLED_TEMPLATE_DIR, help="the template folder to build"
    )
    build.add_argument("--shmastra-repo", default=SHMASTRA_REPO, help="git URL of the Shmastra project")
    build.add_argument("--shmastra-ref", default=SHMASTRA_REF, help="the commit of it to build")
    build.add_argument("--cpu", type=int, default=4, help="vCPUs of each sandbox (default: %(default)s)")
    build.add_argument("--memory-mb", type=int, default=4096, help="memory of each sandbox in MiB")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    try:
        tag = args.tag or template_version(args.template_dir)
        template = template_definition(args.template_dir, Source(args.shmastra_repo, args.shmastra_ref))
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = f"{args.name}:{tag}"
    if args.dry_run:
        print(f"# template {target} ({args.cpu} vCPU, {args.memory_mb} MiB), from {args.template_dir}")
        print("\n".join(describe(template)))
        return 0
    if not os.environ.get("E2B_API_KEY"):
        print("error: E2B_API_KEY is not set in the environment", file=sys.stderr)
        return 1
    try:
        info = asyncio.run(
            AsyncTemplate.build(
                template, target, cpu_count=args.cpu, memory_mb=args.memory_mb, on_build_logs=_print_log
            )
        )
    except (AuthenticationException, BuildException, TemplateException, SandboxException) as exc:
        print(f"error: the E2B build of {target} failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {target}: template {info.template_id}, build {info.build_id}")
    return 0


def _print_log(entry: LogEntry) -> None:
    print(f"[{entry.level}] {entry.message}", flush=True)
