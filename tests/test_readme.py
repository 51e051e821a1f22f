"""The README's configuration examples are valid ``proxy.toml`` (a copied example must not fail)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy_core import load_stage_class, parse_config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
PIPELINE_EXAMPLES = [
    block for block in re.findall(r"```toml\n(.*?)```", README, re.S) if "[[pipeline]]" in block
]


def test_the_readme_has_pipeline_examples() -> None:
    assert any('stage = "vkey"' in block and "url =" in block for block in PIPELINE_EXAMPLES)


@pytest.mark.parametrize("block", PIPELINE_EXAMPLES)
def test_each_pipeline_example_validates(block: str) -> None:
    config = parse_config(block, "README.md", {})
    for spec in config.pipeline:
        config.stage_config(spec, load_stage_class(spec.name).config_class)
