"""``shmastra-cloud sandboxes list|pause|resume|kill|logs|export`` through the real entry point, on a
proxy.toml with the local provider and the stand-in template."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from plugins.sandbox_router.cli import _lifecycle
from plugins.sandbox_router.lifecycle import Lifecycle
from plugins.sandbox_router.providers.base import ProviderTimeout
from proxy_core.cli import main


def _config(tmp_path: Path, url: str, template: Path) -> str:
    path = tmp_path / "proxy.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n\n[[pipeline]]\nstage = "sandbox_router"\n'
        f'template_dir = "{template}"\nhealth_interval = 0.05\nhealth_timeout = 20\n\n'
        f'[pipeline.local]\nroot = "{tmp_path / "sandboxes"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        'hidden_paths = []\nstop_grace = 1.0\npause = "stop"\n'
    )
    return str(path)


def _provision(config: str, email: str) -> None:
    """A first visit's work, done directly (the CLI manages sandboxes that exist)."""

    class Args:
        pass

    args = Args()
    args.config = config  # type: ignore[attr-defined]

    async def provision() -> None:
        async with _lifecycle(args) as lifecycle:  # type: ignore[arg-type]
            issued = await lifecycle.keys.rotate(email)
            await lifecycle.ensure_running(issued.user.id)

    asyncio.run(provision())


def sandboxes(config: str, *args: str) -> int:
    return main(["sandboxes", *args, "-c", config])


def test_sandboxes_commands(
    sqlite_url: str, tmp_path: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, sqlite_url, template)
    assert main(["users", "add", "ada@example.com", "-c", config]) == 0
    _provision(config, "ada@example.com")
    capsys.readouterr()

    assert sandboxes(config, "list") == 0
    email, state, sandbox_id, *_ = capsys.readouterr().out.split("\t")
    assert (email, state) == ("ada@example.com", "running")
    home = tmp_path / "sandboxes" / sandbox_id / "home"
    child = int((home / ".child.pid").read_text())

    assert sandboxes(config, "logs", "ada@example.com") == 0
    capsys.readouterr()  # the stand-in logs nothing by itself; the command must still succeed

    assert sandboxes(config, "pause", "ada@example.com") == 0
    assert capsys.readouterr().out == "paused the sandbox of ada@example.com\n"
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert sandboxes(config, "pause", "ada@example.com") == 0
    assert capsys.readouterr().out == "the sandbox of ada@example.com was not running\n"

    assert sandboxes(config, "resume", "ada@example.com") == 0
    assert capsys.readouterr().out == "the sandbox of ada@example.com is healthy\n"

    output = tmp_path / "ada.tar.gz"
    assert sandboxes(config, "export", "ada@example.com", "-o", str(output)) == 0
    assert capsys.readouterr().out.startswith(f"wrote {output}")
    with tarfile.open(fileobj=io.BytesIO(output.read_bytes()), mode="r:gz") as tar:
        assert "shmastra/package.json" in tar.getnames()

    assert sandboxes(config, "kill", "ada@example.com") == 0
    assert capsys.readouterr().out == "removed the sandbox of ada@example.com\n"
    assert not home.exists()

    assert sandboxes(config, "pause", "nobody@example.com") == 1
    assert capsys.readouterr().err == "error: nobody@example.com has no sandbox\n"


def test_a_provider_failure_is_one_readable_line(
    sqlite_url: str,
    tmp_path: Path,
    template: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path, sqlite_url, template)
    assert main(["users", "add", "ada@example.com", "-c", config]) == 0
    _provision(config, "ada@example.com")
    capsys.readouterr()

    async def times_out(*args: object, **kwargs: object) -> bool:
        raise ProviderTimeout("The sandbox provider did not answer in time.")

    monkeypatch.setattr(Lifecycle, "pause", times_out)
    assert sandboxes(config, "pause", "ada@example.com") == 1
    assert capsys.readouterr().err == "error: The sandbox provider did not answer in time.\n"
    monkeypatch.undo()
    assert sandboxes(config, "kill", "ada@example.com") == 0
