"""The E2B template definition: the same ``e2b-template/`` folder, built into an image with the ``e2b``
SDK's template builder (Node 22 base image, system packages, pnpm, the Shmastra project at a pinned ref
with its dependencies, pm2, our sandbox scripts, ``.template-version``).

The start command ``start.sh`` is baked in: E2B runs it at build time and snapshots the sandbox with it
running, so a new sandbox starts with pm2, the healer and ``mastra dev`` already up (the CLI loaded,
the app bundled: most of a cold start). What a snapshot cannot hold is each sandbox's own environment
(its ``MASTRA_AUTH_TOKEN``, virtual key, gateway URLs, public origin): the app's server process waits
for it before any of the app's code runs (``sandbox-env.mjs``, preloaded through ``NODE_OPTIONS`` when
``SHMASTRA_ENV_FILE`` is set), and so does the healer; the e2b provider writes that file right after
create. The ready check is the server waiting for it (``<file>.waiting``). The router then sees the
app running and starts nothing, and waits for ``GET :4111/health``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e2b import AsyncTemplate, wait_for_file
from e2b.template.main import TemplateFinal

from .prepare import template_version

HOME = "/home/user"
NODE_IMAGE = "22"
PNPM = "pnpm@10.34.8"
SHMASTRA_REPO = "https://github.com/just-ai/shmastra"
SHMASTRA_REF = "0c4431d6a6b03facde018295899b57a86d92de42"
SYSTEM_PACKAGES = ["git", "curl", "ca-certificates", "python3"]
IGNORED = ["**/node_modules", "**/__pycache__", "**/.mastra"]
ENV_FILE = f"{HOME}/.sandbox-env.json"
"""Where a sandbox's own environment arrives (the e2b provider's ``env_file``)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the Shmastra project comes from."""

    repo: str = SHMASTRA_REPO
    ref: str = SHMASTRA_REF


def template_definition(template_dir: Path, source: Source = Source()) -> TemplateFinal:
    version = template_version(template_dir)
    project = f"{HOME}/shmastra"
    template: TemplateFinal = (
        AsyncTemplate(file_context_path=template_dir, file_ignore_patterns=IGNORED)
        .from_node_image(NODE_IMAGE)
        .apt_install(SYSTEM_PACKAGES)
        .run_cmd(f"npm install -g {PNPM}", user="root")
        .make_dir(f"{HOME}/runtime")
        .copy(["runtime/package.json", "runtime/package-lock.json"], f"{HOME}/runtime/")
        .run_cmd(f"cd {HOME}/runtime && npm ci --no-audit --no-fund")
        .git_clone(source.repo, project)
        .run_cmd(f"cd {project} && git checkout --quiet --detach {source.ref}")
        .set_workdir(project)
        .run_cmd("pnpm install")
        .run_cmd("pnpm run install-browsers")
        .run_cmd("pnpm run init-workdir")
        .copy("env.sh", f"{HOME}/env.sh")
        .copy("start.sh", f"{HOME}/start.sh", mode=0o755)
        .copy("pm2.sh", f"{HOME}/pm2.sh", mode=0o755)
        .copy("ecosystem.config.js", f"{HOME}/ecosystem.config.js")
        .copy("healer", f"{HOME}/healer")
        .copy("sandbox-env.mjs", f"{HOME}/sandbox-env.mjs")
        .run_cmd(f"echo {version} > {HOME}/.template-version")
        .set_envs(
            {"MASTRA_TELEMETRY_DISABLED": "1", "TELEMETRY_DISABLED": "true", "SHMASTRA_ENV_FILE": ENV_FILE}
        )
        .set_workdir(HOME)
        .set_start_cmd(f"{HOME}/start.sh", wait_for_file(f"{ENV_FILE}.waiting"))
    )
    return template


def describe(template: TemplateFinal) -> list[str]:
    """The build's steps, one per line (what ``--dry-run`` prints)."""
    return AsyncTemplate.to_dockerfile(template).splitlines()
