"""The documentation stays true to the code: the CLI reference is what the parser prints, and links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_cli_reference_is_generated_from_the_current_parser():
    result = subprocess.run([sys.executable, "scripts/cli_docs.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _anchor(heading: str) -> str:
    # GitHub's rule: lower case, punctuation dropped (hyphens and underscores kept), spaces become hyphens.
    return "#" + re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {target}{anchor}")
    assert not broken, broken


def test_the_readme_links_every_page_in_docs():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert not missing, missing


CITATION = re.compile(r"docs/([\w-]+\.md)(#[\w-]+)?")


def test_every_docs_page_and_section_the_code_cites_exists():
    """A comment that justifies code by `docs/page.md#section` points at a page and heading that exist."""
    broken = []
    for source in sorted([*ROOT.glob("star_core/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py"]):
        for page, anchor in CITATION.findall(source.read_text()):
            path = ROOT / "docs" / page
            if not path.exists() or (anchor and anchor not in _anchors(path)):
                broken.append(f"{source.relative_to(ROOT)}: docs/{page}{anchor}")
    assert not broken, broken
