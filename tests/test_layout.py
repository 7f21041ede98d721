"""The house rules that keep the layout readable: room sizes, the direction of imports, a light import."""

import ast
import pathlib
import subprocess
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "jlstm"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80
HEAVY = ("torch", "flax", "matplotlib", "rich", "typer", "keras", "equinox", "haiku", "music21", "scipy")


def _modules():
    return sorted(PKG.rglob("*.py"))


def _imports(path: pathlib.Path) -> set[str]:
    """Every module named by an import statement in ``path``, at any depth (lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_module_over_the_limit():
    sizes = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in _modules()}
    big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split by concept): {big}"


def test_no_function_over_the_limit():
    long = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(PKG)}:{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_library_never_imports_the_application():
    offenders = [
        f"{p.relative_to(PKG)} imports {name}"
        for p in _modules()
        if "app" not in p.relative_to(PKG).parts
        for name in _imports(p)
        if name == "jlstm.app" or name.startswith("jlstm.app.")
    ]
    assert not offenders, offenders


def test_the_core_imports_only_the_core():
    offenders = [
        f"{p.relative_to(PKG)} imports {name}"
        for p in sorted((PKG / "core").rglob("*.py"))
        for name in _imports(p)
        if name.startswith("jlstm") and not (name == "jlstm.core" or name.startswith("jlstm.core."))
    ]
    assert not offenders, offenders


# The floors of the house, bottom up: a module may import its own floor and those below, never above.
FLOORS = [
    ("core",),
    ("cells",),
    ("boundary", "functional"),
    ("testing", "stacked", "tbptt", "losses", "train", "sharding", "debug", "interop", "nn"),
]


def _floor(name: str) -> int | None:
    parts = name.split(".")
    if parts[0] != "jlstm" or len(parts) < 2:
        return None
    return next((k for k, rooms in enumerate(FLOORS) if parts[1] in rooms), None)


def test_no_import_points_back_up_the_house():
    # core never imports cells, the functional API or anything above; cells never the functional API.
    offenders = []
    for p in _modules():
        mine = _floor("jlstm." + ".".join(p.relative_to(PKG).with_suffix("").parts))
        if mine is None:
            continue
        for name in _imports(p):
            theirs = _floor(name)
            if theirs is not None and theirs > mine:
                offenders.append(f"{p.relative_to(PKG)} imports {name}")
    assert not offenders, offenders


def test_the_layout_is_ruff_formats_and_no_line_opts_out():
    skips = [
        f"{p.relative_to(PKG)}:{n}"
        for p in _modules()
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "fmt: " + "skip" in line
    ]
    assert not skips, f"layout opted out of ruff format (split by concept instead): {skips}"


def test_the_import_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jlstm.app import cli\n")
    assert "jlstm.app.cli" in _imports(bad)
    assert _floor("jlstm.functional") > _floor("jlstm.cells.family") > _floor("jlstm.core.machinery")


@pytest.mark.parametrize("module", ["jlstm", "jlstm.interop", "jlstm.nn", "jlstm.cells"])
def test_import_is_light(module):
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not loaded & set(HEAVY), f"import {module} loaded {sorted(loaded & set(HEAVY))}"
