"""The "write your own stage" guide's two files, extracted exactly as printed, pass their own tests: a
reader who copies them gets a working stage."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "write-a-stage.md"


def files_in_guide() -> dict[str, str]:
    """Every ```python block whose first line is ``# <file>.py``, by file name."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.DOTALL)
    found = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        if re.fullmatch(r"# [a-z_]+\.py", first):
            found[first[2:]] = block
    return found


def test_the_guide_ships_a_stage_and_its_tests() -> None:
    assert set(files_in_guide()) == {"acme_tenant.py", "test_acme_tenant.py"}


def test_the_guides_stage_passes_the_guides_tests(tmp_path: Path) -> None:
    for name, text in files_in_guide().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_acme_tenant.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
