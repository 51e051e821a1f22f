"""Every relative link in the README and under docs/ points at a file or folder that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
    local = [
        target.split("#", 1)[0] for target in targets if "://" not in target and not target.startswith("#")
    ]
    missing = [target for target in local if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing {missing}"


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        relative = page.relative_to(ROOT).as_posix()
        if page.name != "README.md":
            assert f"]({relative})" in readme, f"README does not link {relative}"
