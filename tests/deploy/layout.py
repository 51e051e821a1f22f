"""Reading the shipped deployment files: the production config, env files, YAML manifests."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import yaml

from proxy_core.config import ProxyConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "examples" / "production.toml"
KUBERNETES = ROOT / "deploy" / "kubernetes"

_REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def required_variables(path: Path = PRODUCTION) -> set[str]:
    """The ``${VAR}`` references without a default: what a deployment must set."""
    return set(_REQUIRED.findall(path.read_text(encoding="utf-8")))


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def production_config(env: dict[str, str]) -> ProxyConfig:
    return parse_config(PRODUCTION.read_text(encoding="utf-8"), str(PRODUCTION), env)


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def in_build_context(path: str) -> bool:
    """Whether ``docker build`` sends ``path`` (relative, POSIX). A pattern excludes what it matches and
    everything below it; ``**/`` matches at any depth; the last matching pattern decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if bare.startswith("**/"):
            tails = ["/".join(parts[i : j + 1]) for i in range(len(parts)) for j in range(i, len(parts))]
            matches = any(fnmatch.fnmatchcase(tail, bare[3:]) for tail in tails)
        else:
            matches = any(fnmatch.fnmatchcase(prefix, bare) for prefix in prefixes)
        if matches:
            included = negated
    return included


def build_context() -> list[str]:
    """Every file of the working tree that ``docker build .`` would send."""
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not relative.startswith((".git/", ".venv/")) and in_build_context(relative):
            found.append(relative)
    return sorted(found)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
