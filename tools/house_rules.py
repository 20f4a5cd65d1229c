"""The house rules `make lint` holds beside ruff and import-linter (STYLE.md):

- no function in app/ or config/ over 60 lines;
- every file path a docstring, a comment or a doc (README, docs/, requirements, deployment
  files) names exists;
- no never-set threading.Event waited on (a sleep disguised as a wait);
- no placeholder left in the README or docs/.

Prints each breach as `path:line: rule` and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60
SIZED = ("app", "config")
SKIPPED = {".venv", ".git", "node_modules", "site", "__pycache__", "migrations"}
# A path into the project: a top-level folder, then a file with an extension.
PATH = re.compile(
    r"(?<![\w./-])((?:app|config|tests|bench|deploy|docs|tools)/[\w./-]*\w"
    r"\.(?:py|md|yml|yaml|conf|toml|txt|json|sh|html|js|css))\b"
)
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX|lorem ipsum|[A-Z]+_MINUTES)\b")


def python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        if not SKIPPED.intersection(path.relative_to(ROOT).parts):
            yield path


def long_functions(path: Path, tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                yield f"{node.lineno}: function {node.name} is {lines} lines (at most {MAX_FUNCTION_LINES})"


def prose(source: str, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every comment and docstring, with its first line."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    yield body[0].lineno, body[0].value.value


def missing_paths(source: str, tree: ast.AST) -> Iterator[str]:
    for line, text in prose(source, tree):
        for named in PATH.findall(text):
            if not (ROOT / named).exists():
                yield f"{line}: names {named}, which does not exist"


def never_set_events(source: str, tree: ast.AST) -> Iterator[str]:
    """An Event bound to a name that something waits on and nothing ever sets."""
    events: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "Event":
                for target in node.targets:
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                    if name:
                        events[name] = node.lineno
    for name, line in events.items():
        waited = re.search(rf"\b{re.escape(name)}\.wait\(", source)
        handed_on = re.search(rf"\b{re.escape(name)}\b(?!\.wait\(|\.is_set\(|\s*=\s*\w+\.Event\()", source)
        if waited and not re.search(rf"\b{re.escape(name)}\.set\(", source) and not handed_on:
            yield f"{line}: Event {name} is waited on and never set: a sleep disguised as a wait"


def text_files() -> Iterator[Path]:
    """The project's other files that name paths: docs, requirements, deployment files."""
    for pattern in ("*.md", "requirements*.txt", "*.yml", "*.toml", "Dockerfile", "Makefile", "*.conf"):
        for path in sorted(ROOT.rglob(pattern)):
            if not SKIPPED.intersection(path.relative_to(ROOT).parts):
                yield path


def missing_paths_in_text(path: Path) -> Iterator[str]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for named in PATH.findall(line):
            if not (ROOT / named).exists():
                yield f"{path.relative_to(ROOT)}:{number}: names {named}, which does not exist"


def placeholders() -> Iterator[str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            found = PLACEHOLDER.search(line)
            if found:
                yield f"{page.relative_to(ROOT)}:{number}: placeholder {found.group(1)!r} left in the docs"


def breaches() -> Iterator[str]:
    for path in python_files():
        relative = path.relative_to(ROOT)
        source = path.read_text()
        tree = ast.parse(source)
        checks = [missing_paths(source, tree), never_set_events(source, tree)]
        if relative.parts[0] in SIZED:
            checks.append(long_functions(path, tree))
        for check in checks:
            for breach in check:
                yield f"{relative}:{breach}"
    for path in text_files():
        yield from missing_paths_in_text(path)
    yield from placeholders()


def main() -> int:
    found = list(breaches())
    for breach in found:
        print(breach)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
