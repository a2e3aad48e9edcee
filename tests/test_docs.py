"""The README and docs/: every link works, and the README stays a short entry point."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from tests.support.azurite import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set:
    return {
        _slug(line.lstrip("#"))
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


def _relative_links() -> Iterator[Tuple[Path, str]]:
    for page in PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target):
                yield page, target


@pytest.mark.parametrize("page,target", list(_relative_links()), ids=lambda v: str(v))
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.name}: {target} points nowhere"
    if anchor:
        assert anchor in _anchors(destination), f"{page.name}: no heading for #{anchor}"


def test_the_readme_is_an_entry_point() -> None:
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert 100 <= len(lines) <= 200
    headings = [line for line in lines if line.startswith("## ")]
    order = ["## Prerequisites", "## Run locally", "## Try it", "## Test", "## Deploy"]
    assert [h for h in headings if h in order] == order


def test_the_readme_shows_what_ci_runs() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines():
        if line.startswith("bash "):
            assert line in readme


#: A place in the docs named from code: ``README, "Section"``, ``docs/page.md, "Section"``
#: or ``docs/page.md#anchor``.
_NAMED_SECTION = re.compile(r'\b(README(?:\.md)?|docs/[\w-]+\.md),?\s+"([^"\n]+)"')
_NAMED_ANCHOR = re.compile(r"\b(docs/[\w-]+\.md)(?:#([\w-]+))?")


def _code_files() -> Iterator[Path]:
    for path in PROJECT_ROOT.rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT).parts
        if not (parts[0].startswith(".") or "node_modules" in parts or path == Path(__file__)):
            yield path


def _named_places() -> Iterator[Tuple[str, Path, str]]:
    for path in _code_files():
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(PROJECT_ROOT))
        for page, section in _NAMED_SECTION.findall(text):
            page = "README.md" if page.startswith("README") else page
            yield where, PROJECT_ROOT / page, _slug(section)
        for page, anchor in _NAMED_ANCHOR.findall(text):
            yield where, PROJECT_ROOT / page, anchor


def test_every_docs_section_the_code_names_exists() -> None:
    places = list(_named_places())
    assert len(places) >= 5
    missing = [
        f"{where}: {page.name} #{anchor}"
        for where, page, anchor in places
        if not page.exists() or (anchor and anchor not in _anchors(page))
    ]
    assert not missing


def test_a_section_that_moved_is_found(tmp_path: Path) -> None:
    """The check itself: a README section that is not there is reported."""
    assert _NAMED_SECTION.findall('see README, "Scheduled singletons"') == [
        ("README", "Scheduled singletons")
    ]
    assert _slug("Scheduled singletons") not in _anchors(PROJECT_ROOT / "README.md")


PACKAGE = "durable_singleton"
_CODE_PATH = re.compile(
    r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|yaml|yml|sh|json|html|bicep))(?::\w+)?`"
)


def _named_paths() -> Iterator[Tuple[Path, str]]:
    for page in PAGES:
        for path in _CODE_PATH.findall(page.read_text(encoding="utf-8")):
            yield page, path


@pytest.mark.parametrize("page,path", list(_named_paths()), ids=lambda v: str(v))
def test_every_file_a_page_names_exists(page: Path, path: str) -> None:
    """A file named in backticks (``durable_singleton/job/_run.py``) is where the page says,
    from the project's root, or from the folder of the tests or the package (the pages name
    support files and modules so)."""
    candidates = [PROJECT_ROOT / path, *(PROJECT_ROOT / d / path for d in ("tests", PACKAGE))]
    assert any(c.exists() for c in candidates), f"{page.name}: `{path}` is not in the project"


def test_every_module_the_module_map_names_exists() -> None:
    text = (PROJECT_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = text.split("## Module map", 1)[1]
    named = set(re.findall(r"`(_?\w+\.py)`", table))
    package = PROJECT_ROOT / PACKAGE
    missing = {name for name in named if not list(package.rglob(name))}
    assert len(named) > 20 and not missing, missing


def test_every_span_the_app_records_is_listed_in_operate() -> None:
    """docs/operate.md names every child span (``telemetry.step``) the code records."""
    steps = {
        name
        for module in (PROJECT_ROOT / "durable_singleton").rglob("*.py")
        for name in re.findall(r'step\("([a-z_.]+)"\)', module.read_text(encoding="utf-8"))
    }
    operate = (PROJECT_ROOT / "docs" / "operate.md").read_text(encoding="utf-8")
    assert steps and not {name for name in steps if f"`{name}`" not in operate}
