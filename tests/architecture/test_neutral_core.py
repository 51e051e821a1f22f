"""proxy_core knows nothing of the product embedding it: its program name and defaults come from the
application (``shmastra_cloud`` here), which any other team replaces with its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import shmastra_cloud
from proxy_core.cli import build_parser
from proxy_core.config import load_config
from proxy_core.db import DatabaseConfig

from .imports import ROOT


def test_the_core_never_names_the_product() -> None:
    named = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "proxy_core").rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".sql", ".html", ".toml")
        and "shmastra" in path.read_text().lower()
    ]
    assert named == []


def test_the_program_name_and_defaults_come_from_the_application(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text("")
    assert build_parser("acme-proxy").format_usage().startswith("usage: acme-proxy ")
    neutral = load_config(config).section("database", DatabaseConfig)
    ours = load_config(config, defaults=shmastra_cloud.DEFAULTS).section("database", DatabaseConfig)
    assert (neutral.url, ours.url) == (
        f"sqlite:///{tmp_path}/data/proxy.db",
        f"sqlite:///{tmp_path}/data/shmastra.db",
    )
    config.write_text('[database]\nurl = "sqlite:///elsewhere.db"\n')
    assert load_config(config, defaults=shmastra_cloud.DEFAULTS).section("database", DatabaseConfig).url == (
        f"sqlite:///{tmp_path}/elsewhere.db"  # the file wins over the application's default
    )


def test_the_shmastra_cloud_command_is_the_application(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[[pipeline]]\nstage = "upstream"\nurl = "http://127.0.0.1:9"\n')
    done = subprocess.run(
        [sys.executable, "-m", "shmastra_cloud", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"{config}: OK (1 stages: upstream)\n")
    usage = subprocess.run(
        [sys.executable, "-m", "shmastra_cloud", "nope"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 2 and usage.stderr.startswith("usage: shmastra-cloud ")
