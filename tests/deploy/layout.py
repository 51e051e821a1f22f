"""Reading the shipped deployment files: the production config, env files, YAML manifests."""

from __future__ import annotations

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


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
