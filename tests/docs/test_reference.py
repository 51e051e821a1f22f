"""docs/configuration.md is generated from the config classes: it must match what the generator writes
now, and hold every key of every installed stage and shared section with its default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from docs import generate
from proxy_core.registry import installed_stages, load_stage_class

ROOT = Path(__file__).resolve().parents[2]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    ends = [rest.find(f"\n{'#' * n} ") for n in range(1, len(level) + 1)]
    ends = [end for end in ends if end != -1]
    return rest[: min(ends)] if ends else rest


def test_the_committed_reference_is_current() -> None:
    assert generate.OUTPUT == ROOT / "docs" / "configuration.md"
    assert generate.OUTPUT.read_text(encoding="utf-8") == generate.render(), (
        "docs/configuration.md is stale: run `python -m docs.generate` and commit it"
    )


def test_the_check_command_says_so_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(generate.render().replace("| `port` |", "| `old_port` |"), encoding="utf-8")
    monkeypatch.setattr(generate, "OUTPUT", stale)
    assert generate.main(["--check"]) == 1
    assert "stale: run python -m docs.generate" in capsys.readouterr().err
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == generate.render()


def test_the_module_runs_from_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "docs.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_key_of_every_stage_and_section_is_documented() -> None:
    text = generate.render()
    stages = sorted(installed_stages())
    assert {"auth", "upstream", "vkey"} <= set(stages)
    for name in stages:
        body = section(text, f"## `{name}` stage")
        keys_of(load_stage_class(name).config_class, body)
    for name, model in generate.SHARED_SECTIONS.items():
        keys_of(model, section(text, f"## `[{name}]`"))


def keys_of(model: type[BaseModel], body: str) -> None:
    for key, field in model.model_fields.items():
        row = next((line for line in body.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{model.__name__}.{key} is missing"
        if field.is_required():
            assert "**required**" in row


def test_defaults_descriptions_and_nested_tables_come_from_the_code() -> None:
    text = generate.render()
    database = section(text, "## `[database]`")
    assert "| `retry_initial` | number | `0.5` | Seconds before the first reconnect attempt" in database
    pool = next(line for line in database.splitlines() if line.startswith("| `max_pool_size` |"))
    assert pool.startswith("| `max_pool_size` | integer | `10` |") and pool.endswith("(≥ 1, ≤ 1000) |")
    auth = section(text, "## `auth` stage")
    assert '| `provider` | "email_code" or "workos" or "oidc" | `"email_code"` |' in auth
    workos = section(text, "### `[pipeline.workos]`")
    assert "| `api_key` | secret string | **required** |" in workos
    prices = section(text, '### `[pipeline.prices."<name>"]`')
    assert "| `output` | number | `0` | (≥ 0) |" in prices
