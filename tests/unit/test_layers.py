"""The import rules of DESIGN.md, read from the source with ``ast`` (nothing is imported).

Dependencies point one way: storage imports none of the other packages; transcode imports
nothing from mediaserver; the RTMP core imports nothing else from the project; only
``mediaserver/app.py`` (the composition root) imports webapp, and only its public names; no
module of webapp is part of an import cycle (nor, by now, of any other package). Imports inside
functions are ruff's to police (PLC0415: each says why on its line).

Every ``import`` counts, at module level or inside a function, relative ones resolved; those
under ``if TYPE_CHECKING:`` do not, as they never run. Importing ``a.b`` counts as an edge to
``a.b`` only, not to the package ``a`` it also initialises (every submodule would otherwise
"import" its own package).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mediaserver", "transcode", "storage", "webapp")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the project module imported (the deepest one the statement names)
    names: tuple[str, ...]  # for ``from X import a, b``: a and b
    line: int
    in_function: bool
    text: str  # the source line, for messages


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        # A compiled module counts by its type stub (mediaserver/rtmp/_chunks.pyi).
        for path in [*(ROOT / package).rglob("*.py"), *(ROOT / package).rglob("*.pyi")]:
            found.setdefault(_module_name(path), path)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    node: ast.AST, in_function: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under ``node``, and whether it sits inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _statements(ast.Module(body=[other], type_ignores=[]), in_function)
        else:
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from _statements(child, inner)


def _project_module(name: str) -> str | None:
    """``name`` or its nearest enclosing module of the project (None: not ours)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports_of(module: str, source: str, package: bool) -> Iterator[Import]:
    """What ``module`` (a package's ``__init__`` if ``package``) imports from the project."""
    lines = source.splitlines()
    for node, in_function in _statements(ast.parse(source, module)):
        text = lines[node.lineno - 1]
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _project_module(alias.name)
                if target is not None:
                    yield Import(module, target, (), node.lineno, in_function, text)
            continue
        if node.level:
            base = module.split(".")
            if not package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            stated = ".".join(base + ([node.module] if node.module else []))
        else:
            stated = node.module or ""
        target = _project_module(stated)
        if target is None:
            continue
        names = []
        for alias in node.names:  # ``from package import submodule`` imports the submodule
            submodule = _project_module(f"{stated}.{alias.name}")
            if submodule != target:
                yield Import(module, submodule, (), node.lineno, in_function, text)
            else:
                names.append(alias.name)
        if names:  # names the module (or package) itself defines
            yield Import(module, target, tuple(names), node.lineno, in_function, text)


@cache
def imports() -> tuple[Import, ...]:
    return tuple(
        imp
        for module, path in sorted(modules().items())
        for imp in _imports_of(module, path.read_text(), path.name == "__init__.py")
        if imp.target != module
    )


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def cycles() -> list[list[str]]:
    """The import cycles of the project: strongly connected components of more than one
    module (Tarjan, iteratively: the graph is a few hundred modules)."""
    edges: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports():
        edges[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _show(found: list[Import]) -> str:
    return "\n".join(f"  {imp.source}:{imp.line}: {imp.text.strip()}" for imp in found)


def test_the_walk_sees_imports_of_every_kind() -> None:
    """Guards the rules below against passing on a walker that sees nothing."""
    source = """
import storage.db
from .service import ChatService
from . import api, socket
from .. import images
from ..keys import DB_KEY
from mediaserver.live import LiveRegistry
if TYPE_CHECKING:
    from ..hls import HlsService
else:
    from ..errors import ApiError
def handler():
    from webapp.render import render  # why
"""
    found = {
        (imp.target, imp.in_function)
        for imp in _imports_of("webapp.chat.pages", source, package=False)
    }
    assert found == {
        ("storage.db", False),
        ("webapp.chat.service", False),
        ("webapp.chat.api", False),
        ("webapp.chat.socket", False),
        ("webapp.images", False),
        ("webapp.keys", False),
        ("mediaserver.live", False),
        ("webapp.errors", False),
        ("webapp.render", True),
    }, found
    # In a package's __init__, "." is the package itself.
    assert {
        imp.target for imp in _imports_of("webapp.auth", "from .login import limiter", package=True)
    } == {"webapp.auth.login"}
    edges = {(imp.source, imp.target) for imp in imports()}
    assert ("webapp.app", "webapp.keys") in edges and ("mediaserver.app", "webapp") in edges


def test_no_module_of_webapp_is_part_of_an_import_cycle() -> None:
    bad = [c for c in cycles() if any(_in(m, "webapp") for m in c)]
    assert not bad, f"import cycles through webapp: {bad}"


def test_no_import_cycles_in_mediaserver_transcode_or_storage() -> None:
    assert not cycles(), f"import cycles: {cycles()}"


def test_only_the_composition_root_imports_webapp_and_only_its_public_names() -> None:
    outside = [
        imp for imp in imports() if _in(imp.target, "webapp") and not _in(imp.source, "webapp")
    ]
    assert not [imp for imp in outside if imp.source != "mediaserver.app"], (
        "only mediaserver/app.py may import webapp:\n" + _show(outside)
    )
    past_the_face = [imp for imp in outside if imp.target != "webapp"]
    assert not past_the_face, "import webapp's public names from webapp:\n" + _show(past_the_face)
    public = _all_of(modules()["webapp"])
    hidden = [imp for imp in outside if set(imp.names) - public]
    assert not hidden, f"not in webapp.__all__ {sorted(public)}:\n" + _show(hidden)


def _all_of(path: Path) -> set[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_the_rtmp_core_imports_nothing_else_from_the_project() -> None:
    bad = [
        imp
        for imp in imports()
        if _in(imp.source, "mediaserver.rtmp") and not _in(imp.target, "mediaserver.rtmp")
    ]
    assert not bad, "mediaserver/rtmp is sans-I/O and self-contained:\n" + _show(bad)


def test_transcode_imports_nothing_from_mediaserver() -> None:
    bad = [
        imp for imp in imports() if _in(imp.source, "transcode") and _in(imp.target, "mediaserver")
    ]
    assert not bad, "media flows one way (mediaserver -> transcode):\n" + _show(bad)


def test_storage_imports_none_of_the_other_packages() -> None:
    bad = [
        imp for imp in imports() if _in(imp.source, "storage") and not _in(imp.target, "storage")
    ]
    assert not bad, "storage sits at the bottom:\n" + _show(bad)


# webapp's floor: leaf modules any area may import. The front (``fastpath``, which answers HLS
# with the HLS area's service), ``app`` and the package itself sit on top and may import areas.
WEBAPP_FLOOR = frozenset(
    {
        "keys",
        "errors",
        "render",
        "openapi",
        "identity",
        "parsing",
        "forwarded",
        "admission",
        "documents",
        "images",
        "stored",
        "stream_links",
        "http_head",
        "sharing",
        "timing",
        "answers",
        "page_cache",
        "viewer_keys",
        "chat_content",
        "group_commit",
    }
)
WEBAPP_TOP = frozenset({"", "app", "fastpath"})


def _webapp_part(module: str) -> str:
    """``webapp.chat.api`` -> ``chat``; ``webapp`` -> ``""``."""
    return module.split(".")[1] if module.count(".") else ""


def test_webapp_areas_import_only_the_floor_never_each_other() -> None:
    crossing = [
        imp
        for imp in imports()
        if _in(imp.source, "webapp")
        and _in(imp.target, "webapp")
        and _webapp_part(imp.source) not in WEBAPP_TOP
        and _webapp_part(imp.target) != _webapp_part(imp.source)
        and _webapp_part(imp.target) not in WEBAPP_FLOOR
    ]
    assert not crossing, "a webapp area imports another area or the top:\n" + _show(crossing)
    floor_up = [
        imp
        for imp in imports()
        if _in(imp.source, "webapp")
        and _webapp_part(imp.source) in WEBAPP_FLOOR
        and _in(imp.target, "webapp")
        and _webapp_part(imp.target) not in WEBAPP_FLOOR
    ]
    assert not floor_up, "a floor module imports an area:\n" + _show(floor_up)


def test_the_floor_list_names_real_modules() -> None:
    """A renamed floor module must not silently turn the rule above into a pass."""
    known = {_webapp_part(m) for m in modules() if _in(m, "webapp")}
    assert WEBAPP_FLOOR <= known, sorted(WEBAPP_FLOOR - known)


def test_no_file_in_webapp_or_transcode_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("webapp", "transcode")
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, f"split these along their seams: {long}"
