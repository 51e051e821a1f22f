"""Relative paths in a config file mean "beside the file", whatever the current folder."""

from __future__ import annotations

from pathlib import Path

import shmastra_cloud
from plugins.auth.config import AuthConfig
from proxy_core import parse_config
from proxy_core.db.config import DatabaseConfig


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path: Path) -> None:
    file = str(tmp_path / "deploy" / "proxy.toml")
    text = (
        '[database]\nurl = "sqlite:///state/db.sqlite"\n'
        '[[pipeline]]\nstage = "auth"\ndata_dir = "${DATA:-var}"\n'
        '[pipeline.email_code]\ndelivery = "mailbox"\nmailbox_dir = "mail"\n'
    )
    config = parse_config(text, file, {})
    database = config.section("database", DatabaseConfig)
    assert database.url == f"sqlite:///{tmp_path}/deploy/state/db.sqlite"
    auth = config.stage_config(config.pipeline[0], AuthConfig)
    assert auth.data_dir == tmp_path / "deploy" / "var"
    assert auth.email_code.mailbox_dir == tmp_path / "deploy" / "mail"


def test_defaults_and_absolute_paths(tmp_path: Path) -> None:
    file = str(tmp_path / "proxy.toml")
    config = parse_config('[[pipeline]]\nstage = "auth"\n', file, {}, shmastra_cloud.DEFAULTS)
    assert config.section("database", DatabaseConfig).url == f"sqlite:///{tmp_path}/data/shmastra.db"
    assert config.stage_config(config.pipeline[0], AuthConfig).data_dir == tmp_path / "data"
    absolute = parse_config(
        '[database]\nurl = "sqlite:////srv/db.sqlite"\n[[pipeline]]\nstage = "auth"\ndata_dir = "/srv/auth"\n',
        file,
        {},
    )
    assert absolute.section("database", DatabaseConfig).url == "sqlite:////srv/db.sqlite"
    assert absolute.stage_config(absolute.pipeline[0], AuthConfig).data_dir == Path("/srv/auth")
    postgres = parse_config('[database]\nurl = "postgresql://u@h/db"\n', file, {})
    assert postgres.section("database", DatabaseConfig).url == "postgresql://u@h/db"


def test_a_config_built_in_code_keeps_paths_as_given() -> None:
    assert AuthConfig(data_dir=Path("rel")).data_dir == Path("rel")
