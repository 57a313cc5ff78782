"""The documentation site's sources agree with the code (fast: no site is built here; CI runs
``mkdocs build --strict``, which fails on any warning)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import jaxlr

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = sorted((DOCS / "api").glob("*.md"))
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def directives() -> list[tuple[str, str]]:
    """(page, path) of every ``::: path`` line of the API reference."""
    return [(page.name, path) for page in API
            for path in re.findall(r"^:::\s+(\S+)", page.read_text(encoding="utf-8"), re.M)]


def test_every_public_name_has_one_entry_in_the_api_reference():
    entries: dict[str, list[str]] = {}
    for page, path in directives():
        entries.setdefault(path, []).append(page)
    missing = [n for n in jaxlr.__all__ if f"jaxlr.{n}" not in entries]
    twice = {p: pages for p, pages in entries.items() if len(pages) > 1}
    assert not missing, (f"names of jaxlr.__all__ without a '::: jaxlr.NAME' entry in "
                         f"docs/api/*.md: {missing}")
    assert not twice, f"documented more than once: {twice}"


def test_the_api_overview_links_every_public_name():
    text = (DOCS / "api" / "index.md").read_text(encoding="utf-8")
    missing = [n for n in jaxlr.__all__ if f"][jaxlr.{n}]" not in text]
    assert not missing, f"docs/api/index.md's table does not link: {missing}"


@pytest.mark.parametrize("path", sorted({p for _, p in directives()}))
def test_every_api_entry_exists(path):
    obj = jaxlr
    for part in path.split(".")[1:]:
        if not hasattr(obj, part):  # a submodule not imported yet
            importlib.import_module(f"{obj.__name__}.{part}")
        obj = getattr(obj, part)
    assert obj.__doc__, f"{path} has no docstring"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_has_a_page_in_the_nav(script):
    page = DOCS / "examples" / f"{script.stem}.md"
    assert page.exists(), f"no docs/examples/{page.name} for {script.name}"
    text = page.read_text(encoding="utf-8")
    assert f'--8<-- "examples/{script.name}"' in text, f"{page.name} does not include the source"
    assert f"examples/{page.name}" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), (
        f"docs/examples/{page.name} is not in mkdocs.yml's nav")


def test_figures_exist_and_are_small():
    pages = [p.read_text(encoding="utf-8") for p in (DOCS / "examples").glob("*.md")]
    wanted = {m for text in pages for m in re.findall(r"\.\./figures/([\w.-]+\.png)", text)}
    wanted |= {m for text in pages for m in re.findall(r'"docs/figures/([\w.-]+)"', text)}
    missing = sorted(f for f in wanted if not (DOCS / "figures" / f).exists())
    assert not missing, f"run python docs/make_figures.py: missing {missing}"
    big = {p.name: p.stat().st_size for p in (DOCS / "figures").glob("*.png")
           if p.stat().st_size >= 250_000}
    assert not big, f"figures of 250 KB or more: {big}"
