"""The design lives in the repository: every document a tracked file cites must be a file of this
repository, and every "docs/X.md, Section" citation must name an existing file and one of its headings.
A clone then has everything its comments and docs point to."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Documents that lived outside the repository: a mention is allowed only where the repository holds the
# file it names (the "../shared/" folder never is: it is outside any checkout).
EXTERNAL = {
    "DESIGN.md": re.compile(r"\bDESIGN\b"),
    "STACK_NOTES.md": re.compile(r"\bSTACK_NOTES\b"),
    "METHOD_RANGES.md": re.compile(r"\bMETHOD_RANGES\b"),
    "../shared/": re.compile(r"\.\./shared/"),
}
# "docs/X.md" optionally followed by ", Section" (the section may start on the next line of a comment).
CITATION = re.compile(r"docs/([A-Za-z0-9_./-]+\.md)(?:,[ \t]*(?:\n[ \t]*(?:#[ \t]*)?)?([A-Z][^\n]*))?")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$")


def tracked_files() -> list[str]:
    """The repository's files (git's list when this is a checkout, else every file under the root)."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        names = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and not any(part.startswith(".") or part in ("build", "__pycache__")
                                            for part in p.relative_to(ROOT).parts)]
    assert names, f"no files found under {ROOT}"
    return sorted(n for n in names if n != THIS and (ROOT / n).is_file())


def texts() -> dict[str, str]:
    out = {}
    for name in tracked_files():
        try:
            out[name] = (ROOT / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary files cite nothing
            continue
    return out


def headings(path: Path) -> set[str]:
    """Markdown headings of `path`, outside fenced code blocks."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(m.group(1).strip())
    return found


def names_heading(section: str, known: set[str]) -> bool:
    """`section` (the text after "docs/X.md, ") begins with a whole heading of the file."""
    return any(section.startswith(h) and (len(section) == len(h) or not section[len(h)].isalnum())
               for h in known)


def test_every_cited_design_document_is_in_the_repository():
    present = {Path(n).name for n in tracked_files()}
    offenders = []
    for name, text in texts().items():
        for document, pattern in EXTERNAL.items():
            if document.startswith("..") or document not in present:
                lines = [i + 1 for i, line in enumerate(text.splitlines()) if pattern.search(line)]
                offenders += [f"{name}:{n}: cites {document}, which this repository does not hold" for n in lines]
    assert not offenders, "\n".join(offenders)


def test_every_docs_citation_names_an_existing_file_and_heading():
    offenders = []
    cited = 0
    for name, text in texts().items():
        for m in CITATION.finditer(text):
            cited += 1
            line = text.count("\n", 0, m.start()) + 1
            doc = ROOT / "docs" / m.group(1)
            if not doc.is_file():
                offenders.append(f"{name}:{line}: docs/{m.group(1)} does not exist")
            elif m.group(2) and not names_heading(m.group(2), headings(doc)):
                offenders.append(f"{name}:{line}: docs/{m.group(1)} has no heading that {m.group(2)!r} begins with")
    assert cited > 0, "no docs/ citation found: the pattern or the file list is broken"
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("doc", ["architecture.md", "stack.md", "method_ranges.md"])
def test_the_design_documents_exist_with_sections(doc):
    assert len(headings(ROOT / "docs" / doc)) >= 3, f"docs/{doc} lost its sections"


def test_the_citation_check_catches_a_missing_heading():
    known = headings(ROOT / "docs" / "architecture.md")
    assert names_heading("Cost units).", known)
    assert names_heading("Budgets and checkpoints", known)
    assert not names_heading("Cost unit", known)       # a heading cut short is not that heading
    assert not names_heading("No such section", known)
