"""The runtime library's packages import one way (core ← registry ← serving ← monitoring ← lifecycle), with
no cycles between modules, and the serving package never imports scikit-learn or scipy at module level.

Read from the source with ``ast`` (every import, module level or inside a function), so a new module that
points the wrong way fails here before anyone has to notice it in a cold start or an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "sklambda" / "sklambda"
ORDER = ["core", "registry", "serving", "monitoring", "lifecycle"]


def _modules() -> dict[str, Path]:
    found = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, id(node) in top_level))
            # `from sklambda.serving import lean` imports the submodule sklambda.serving.lean
            out += [(f"{target}.{alias.name}", id(node) in top_level) for alias in node.names]
    return out


def _group(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sklambda" and parts[1] in ORDER else None


MODULES = _modules()


def test_the_library_has_the_packages_the_docs_describe():
    groups = {_group(name) for name in MODULES} - {None}
    assert groups == set(ORDER)
    loose = [name for name in MODULES if name.count(".") == 1 and _group(name) is None]
    assert loose == [], f"modules outside the packages: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_package_order(module):
    source = _group(module)
    if source is None:
        return  # the root package's __init__ only holds the version and the map
    upward = [
        target
        for target, _ in _imports(MODULES[module], module)
        if (group := _group(target)) is not None and ORDER.index(group) > ORDER.index(source)
    ]
    assert upward == [], f"{module} ({source}) imports a higher package: {upward}"


def test_no_import_cycles_between_modules():
    graph = {
        name: {t for t, _ in _imports(path, name) if t in MODULES and t != name and not name.startswith(t + ".")}
        for name, path in MODULES.items()
    }
    # A package __init__ importing its own submodules is not a cycle for the submodules.
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, stack + [nxt]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if state.get(name) is None and visit(name, [name]):
            break
    assert cycle == [], f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _group(m) in ("core", "registry", "serving")))
def test_the_request_path_packages_never_import_scikit_learn_or_scipy_at_module_level(module):
    heavy = [
        target
        for target, top in _imports(MODULES[module], module)
        if top and target.split(".")[0] in ("sklearn", "scipy", "joblib", "pandas")
    ]
    assert heavy == [], f"{module} imports {heavy} at module level"


def test_the_check_sees_an_upward_import(tmp_path):
    """Positive control: the same reading flags a registry module importing lifecycle."""
    bad = tmp_path / "bad.py"
    bad.write_text("from sklambda.lifecycle.training import train\n")
    targets = [t for t, _ in _imports(bad, "sklambda.registry.bad")]
    assert any(_group(t) == "lifecycle" for t in targets)
