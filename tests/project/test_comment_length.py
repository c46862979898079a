"""No comment and no help string longer than three lines; the measurement behind a value goes to docs/.

A comment block is a run of consecutive comment lines: lines whose only token is a comment, and the
comment lines that continue a trailing comment (own-line comments starting in that comment's column).
A help string is a string literal given as `help=` (argparse, Streamlit widgets), the help of a
RunConfig field (the fourth argument of config._f) or a constant named *_HELP. It is "three lines
when shown" when its literal spans at most 3 source lines and its text is at most 3 x 100 characters
(an f-string's text counted without its placeholders). Docstrings are not comments: they are left out.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["star_core", "pages", "app.py", "scripts", "bench", "tests"]
MAX_LINES = 3
MAX_HELP_CHARS = MAX_LINES * 100


def _files() -> list[Path]:
    out = []
    for name in CHECKED:
        path = ROOT / name
        out += [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
    return out


def comment_blocks(source: str) -> list[tuple[int, int]]:
    """(first line, line count) of every comment block in `source`."""
    blocks: list[list[int]] = []  # [first row, last row, trailing comment's column or -1]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        own_line = not tok.line[:col].strip()
        last = blocks[-1] if blocks else None
        if last and own_line and row == last[1] + 1 and (last[2] < 0 or col == last[2]):
            last[1] = row
        else:
            blocks.append([row, row, -1 if own_line else col])
    return [(first, end - first + 1) for first, end, _ in blocks]


def _text_length(node: ast.AST) -> int | None:
    """The characters of a string literal (an f-string's without placeholders); None for another expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return len(node.value)
    if isinstance(node, ast.JoinedStr):
        return sum(len(v.value) for v in node.values if isinstance(v, ast.Constant))
    return None


def _literals(node: ast.AST):
    """The string literals an expression shows: itself, both sides of an `if`, the text wrapped in a call."""
    if isinstance(node, ast.IfExp):
        yield from _literals(node.body)
        yield from _literals(node.orelse)
    elif isinstance(node, ast.Call):
        for arg in node.args:
            yield from _literals(arg)
    elif _text_length(node) is not None:
        yield node


def help_strings(tree: ast.AST):
    """Every help string literal in a module's tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "help":
                    yield from _literals(kw.value)
            if isinstance(node.func, ast.Name) and node.func.id == "_f" and len(node.args) >= 4:
                yield from _literals(node.args[3])
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith("_HELP")
                                                  for t in node.targets):
            values = node.value.values if isinstance(node.value, ast.Dict) else [node.value]
            for value in values:
                yield from _literals(value)


def offenders() -> list[str]:
    out = []
    for path in _files():
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        for first, count in comment_blocks(source):
            if count > MAX_LINES:
                out.append(f"{where}:{first}: comment of {count} lines")
        for node in help_strings(ast.parse(source)):
            lines, chars = node.end_lineno - node.lineno + 1, _text_length(node)
            if lines > MAX_LINES or chars > MAX_HELP_CHARS:
                out.append(f"{where}:{node.lineno}: help string of {lines} lines, {chars} characters")
    return out


def test_no_comment_or_help_string_is_longer_than_three_lines():
    found = offenders()
    assert not found, (f"{len(found)} comments or help strings longer than {MAX_LINES} lines; keep the one line of "
                       "why and link the measurement in docs/measurements.md:\n" + "\n".join(found))


def test_the_checker_sees_blocks_and_continued_trailing_comments():
    source = "x = 1  # a\n       # b\n# c\ny = 2\n# d\n# e\n# f\n# g\n"
    assert comment_blocks(source) == [(1, 2), (3, 1), (5, 4)]
