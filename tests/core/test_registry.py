"""Each fact about a stage said once: its config type comes from ``Stage[XConfig]`` (a separate
``config_class`` must agree), its entry-point name must be its ``name``, and a stage built for a test
goes through the same path (and error mapping) as one built from ``proxy.toml``."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from proxy_core import ConfigError, Stage, StageConfig, StageContext, build_stages, make_context
from proxy_core.cli import build_parser
from proxy_core.registry import ENTRY_POINT_GROUP, UnknownStageError, installed_stages, load_stage_class
from proxy_core.testing import config_from_toml, make_app, stage


class ColourConfig(StageConfig):
    colour: str = "blue"


class Colour(Stage[ColourConfig]):
    name = "colour"


class Fussy(Stage[ColourConfig]):
    name = "fussy"

    def __init__(self, config: ColourConfig, context: StageContext) -> None:
        super().__init__(config, context)
        if config.colour != "blue":
            raise ValueError(f"only blue will do, not {config.colour}")


def test_the_config_type_comes_from_the_type_argument() -> None:
    assert Colour.config_class is ColourConfig


def test_a_config_class_that_disagrees_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="config_class StageConfig disagrees with Stage\\[ColourConfig\\]"):

        class Confused(Stage[ColourConfig]):
            name = "confused"
            config_class = StageConfig


def test_every_installed_stage_is_named_as_its_entry_point() -> None:
    for name in installed_stages():
        assert load_stage_class(name).name == name


def test_an_entry_point_whose_stage_calls_itself_otherwise_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return [EntryPoint("paint", f"{__name__}:Colour", group)]

    monkeypatch.setattr("proxy_core.registry.entry_points", fake)
    with pytest.raises(UnknownStageError, match=r"installed as 'paint' .* calls itself 'colour'"):
        load_stage_class("paint")


@pytest.mark.parametrize("build", ["toml", "testing"])
def test_tests_build_stages_by_the_production_path(build: str) -> None:
    """The same error, naming the table, whether the stage comes from ``proxy.toml`` or ``stage()``."""
    with pytest.raises(ConfigError) as caught:
        if build == "toml":
            text = f'[[pipeline]]\nstage = "{__name__}:Fussy"\ncolour = "red"\n'
            build_stages(make_context(config_from_toml(text)))
        else:
            make_app([stage(Fussy, colour="red")])
    assert str(caught.value).endswith("only blue will do, not red")
    assert "[[pipeline]] #" in str(caught.value)


def test_a_stage_whose_dependencies_are_missing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(group: str) -> list[EntryPoint]:
        return [EntryPoint("heavy", "tests.core.needs_missing_dependency:Heavy", group)]

    monkeypatch.setattr("proxy_core.registry.entry_points", fake)
    with pytest.raises(UnknownStageError, match=r"stage 'heavy' is installed but cannot be loaded: .*extra"):
        load_stage_class("heavy")


def test_a_command_whose_dependencies_are_missing_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(group: str) -> list[EntryPoint]:
        return [EntryPoint("heavy", "tests.core.needs_missing_dependency:register", group)]

    monkeypatch.setattr("proxy_core.cli.entry_points", fake)
    usage = build_parser("acme").format_help()
    assert "serve" in usage and "heavy" not in usage
