"""Browser tests must hand ``wait_for_function`` a function, not a bare expression.

Playwright evaluates the text it is given with ``eval`` inside the page. A function's text is
evaluated once, during the first check, which runs inside DevTools' own evaluation and so is
allowed by our Content-Security-Policy (``script-src 'self'``, no ``unsafe-eval``). A bare
expression is evaluated again on every later poll, outside DevTools, where the policy refuses
``eval``: the wait then fails only when the condition was not already true at the first check,
that is, only on a machine slow enough for the page to be still catching up. CI met exactly
that. This test keeps the pattern out of the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _text(node: ast.expr) -> str | None:
    """The leading literal text of a string argument (plain, implicitly joined or f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _is_function_text(text: str) -> bool:
    head = text.lstrip()
    if head.startswith(("function", "async ")):
        return True
    arrow = head.find("=>")
    return arrow > 0 and (head.startswith("(") or head[:arrow].strip().isidentifier())


def _bare_expressions(path: Path, root: Path = TESTS) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "wait_for_function"
            and node.args
        ):
            text = _text(node.args[0])
            if text is not None and not _is_function_text(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {text[:60]!r}")
    return found


def test_every_wait_for_function_gets_a_function() -> None:
    paths = sorted(TESTS.rglob("test_*.py"))
    offenders = [hit for path in paths for hit in _bare_expressions(path)]
    assert not offenders, "write these as '() => ...':\n" + "\n".join(offenders)


def test_the_check_sees_a_bare_expression(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "async def t(page):\n"
        "    await page.wait_for_function(\"document.title === 'x'\")\n"
        "    await page.wait_for_function(\"() => document.title === 'x'\")\n"
        "    await page.wait_for_function('el => el.hidden', arg=None)\n"
    )
    hits = _bare_expressions(sample, root=tmp_path)
    assert len(hits) == 1 and ":2:" in hits[0]
