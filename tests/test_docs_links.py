"""Every citation of the repository resolves.

- In the documents (README.md, docs/*.md, kvemulator/README.md): every relative Markdown link names
  a file of the repository, and its `#anchor` a heading of that file.
- In the documents, and in the comments and docstrings of the code (kvca_core/, blueprints/,
  kvemulator/, infra/, bench/, demo/, tests/, function_app.py): every repository path written out
  (`kvca_core/clock.py`, "see docs/design.md", `infra/app/*.bicep`) names a file or folder that
  exists, and a section cited by its title (docs/design.md, "A CA in the vault"; README "Deploy to
  Azure") is a heading of that document.

A path is recognised by its first folder, one of the repository's own (SOURCE_DIRS), not preceded by
a slash, a dot or a letter: an URL's path (`https://learn.microsoft.com/azure/...`) or another
repository's path given as a URL is not one of ours.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "kvemulator" / "README.md"]
SOURCE_DIRS = (".ci", "bench", "blueprints", "demo", "docs", "infra", "kvca_core", "kvemulator", "schemas", "tests")
CODE = ("kvca_core", "blueprints", "kvemulator", "infra", "bench", "demo", "tests")
CODE_SUFFIXES = (".py", ".bicep", ".json", ".sh", ".ps1")

_PATH = re.compile(r"(?<![\w./~-])((?:%s)/[\w./*-]*)" % "|".join(re.escape(d) for d in SOURCE_DIRS))
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_SECTION = re.compile(r"(?<![\w./-])(README(?:\.md)?|(?:docs|kvemulator)/[\w.-]+\.md)(?:'s)?,? \"([^\"\n]+)\"")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def headings(doc: Path) -> list[str]:
    text = _FENCE.sub("", doc.read_text())  # a `# comment` in a shell block is no heading
    return [h.replace("`", "").strip() for h in _HEADING.findall(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def path_problems(text: str, where: str) -> list[str]:
    problems = []
    for found in _PATH.finditer(text):
        path = found.group(1).rstrip(".")
        exists = any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()
        if not exists:
            line = text.count("\n", 0, found.start()) + 1
            problems.append(f"{where}:{line}: {path} does not exist")
    for found in _SECTION.finditer(text):
        doc = ROOT / ("README.md" if found.group(1).startswith("README") else found.group(1))
        title = found.group(2)
        if doc.is_file() and not any(title in heading for heading in headings(doc)):
            line = text.count("\n", 0, found.start()) + 1
            problems.append(f"{where}:{line}: {found.group(1)} has no section {title!r}")
    return problems


def link_problems(doc: Path, root: Path = ROOT) -> list[str]:
    where = doc.relative_to(root).as_posix()
    problems = []
    for target in _LINK.findall(_FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or not linked.is_relative_to(root.resolve()):
            problems.append(f"{where}: link {target} names no file of the repository")
        elif anchor and linked.suffix == ".md" and anchor not in {slug(h) for h in headings(linked)}:
            problems.append(f"{where}: link {target}: no heading {anchor!r} in {linked.relative_to(root.resolve())}")
    return problems


def comments_and_docstrings(source: str) -> str:
    """A Python file's comments and its statement-level strings (docstrings), each on its own line
    as in the file (line numbers kept); code, and the strings inside it, left out."""
    lines = [""] * (source.count("\n") + 2)
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        statement_start = previous in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                                       tokenize.ENCODING)
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and statement_start):
            for offset, text in enumerate(token.string.splitlines()):
                lines[token.start[0] - 1 + offset] += " " + text
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return "\n".join(lines)


def code_files() -> list[Path]:
    files = [ROOT / "function_app.py"]
    for folder in CODE:
        files += [p for p in sorted((ROOT / folder).rglob("*")) if p.suffix in CODE_SUFFIXES and p.is_file()
                  and "__pycache__" not in p.parts]
    return files


def test_the_source_folders_exist():
    assert [d for d in SOURCE_DIRS if not (ROOT / d).is_dir()] == []


def test_every_link_and_path_in_the_documents_resolves():
    problems = []
    for doc in DOCUMENTS:
        problems += link_problems(doc)
        problems += path_problems(doc.read_text(), doc.relative_to(ROOT).as_posix())
    assert problems == []


def test_every_path_cited_in_code_comments_and_docstrings_resolves():
    problems = []
    for path in code_files():
        text = path.read_text()
        if path.suffix == ".py":
            text = comments_and_docstrings(text)
        problems += path_problems(text, path.relative_to(ROOT).as_posix())
    assert problems == []


def test_the_checks_fail_on_a_missing_file_a_missing_heading_or_a_bad_link(tmp_path):
    assert path_problems("see docs/nowhere.md and kvca_core/clock.py", "x") == ["x:1: docs/nowhere.md does not exist"]
    assert path_problems("infra/app/*.bicep, infra/app/*.nothing", "x") == ["x:1: infra/app/*.nothing does not exist"]
    assert path_problems('(docs/design.md, "A CA nowhere")', "x") == ["x:1: docs/design.md has no section 'A CA nowhere'"]
    assert path_problems("https://github.com/o/r/blob/main/infra/app/nothing.bicep", "x") == []
    source = '"""See kvca_core/gone.py."""\nx = "kvca_core/runtime/string"  # and docs/gone.md\n'
    assert path_problems(comments_and_docstrings(source), "y") == ["y:1: kvca_core/gone.py does not exist",
                                                                   "y:2: docs/gone.md does not exist"]
    broken = tmp_path / "broken.md"
    broken.write_text("[x](nothing.md) [y](#no-such-heading) [z](#a-heading) [w](../../etc/passwd)\n# A heading\n")
    assert link_problems(broken, tmp_path) == [
        "broken.md: link nothing.md names no file of the repository",
        "broken.md: link #no-such-heading: no heading 'no-such-heading' in broken.md",
        "broken.md: link ../../etc/passwd names no file of the repository"]
