"""What the Dockerfile installs is complete: the package built from exactly the Docker build context
(what .dockerignore lets through) holds every file of every package (SQL migrations, pages, styles,
scripts), not only the Python modules an editable install happens to find in place."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from .layout import ROOT, build_context


def source_files() -> set[str]:
    """Every file of every package ``[tool.setuptools.packages.find]`` includes."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [
        path
        for path in ROOT.iterdir()
        if (path / "__init__.py").exists() and any(fnmatch.fnmatchcase(path.name, p) for p in patterns)
    ]
    assert {"proxy_core", "plugins"} <= {package.name for package in packages}
    found = set()
    for package in packages:
        for path in package.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_package_built_from_the_build_context_ships_every_file(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative in build_context():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = sorted(source_files() - shipped)
    assert not missing, f"the image would lack {missing} (add them to [tool.setuptools.package-data])"
    entry_points = next(name for name in shipped if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for name, target in pyproject["project"]["scripts"].items():
        assert f"{name} = {target}" in scripts
