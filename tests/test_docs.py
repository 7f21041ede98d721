"""The documentation holds what the code says: every public name has a docstring and a place in the API
reference, every name the README documents is there too, the backward page's code lines are in the
functions it names, and the examples run.

Docstrings are read with griffe, the library mkdocstrings renders the API reference with, so what is
checked here is what the site shows (module attributes such as ``GATE_ORDER`` included, which carry
their docstring as a string after the assignment). ``mkdocs build --strict`` (in ``.ci/run``) checks the
links and references.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe
import pytest

import jlstm
import jlstm.interop

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LAYER_MODULES = ("nnx", "linen", "equinox", "keras")
# The methods a layer user calls; each must say what it does when the layer defines it.
LAYER_METHODS = ("__call__", "call", "step", "params", "initialize_carry")


@pytest.fixture(scope="module")
def package() -> griffe.Module:
    return griffe.load("jlstm", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)


def _doc(obj: griffe.Object) -> str:
    return obj.docstring.value.strip() if obj.docstring else ""


def _target(package: griffe.Module, path: str) -> griffe.Object:
    obj = package[path.removeprefix("jlstm.")] if path != "jlstm" else package
    return obj.final_target if obj.is_alias else obj


def public_names(package: griffe.Module) -> list[str]:
    """The public surface, as listed in docs/api/index.md."""
    names = [f"jlstm.{n}" for n in jlstm.__all__]
    names += [f"jlstm.interop.{n}" for n in jlstm.interop.__all__]
    names += [f"jlstm.nn.{m}.{c}" for m in LAYER_MODULES for c in ("LSTM", "StackedLSTM")]
    sharding = package["sharding"]
    kinds = (griffe.Kind.FUNCTION, griffe.Kind.CLASS)
    names += [f"jlstm.sharding.{n}" for n, o in sharding.members.items()
              if not n.startswith("_") and not o.is_alias and o.kind in kinds]  # fmt: skip
    names += ["jlstm.sharding", "jlstm.debug.checked_lstm",
              "jlstm.cells.custom.init_params"]  # fmt: skip
    return names


def api_directives() -> set[str]:
    """Every ``::: name`` of the API reference pages."""
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found |= set(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.M))
    return found


def _documented_in_api(path: str, directives: set[str]) -> bool:
    # A name is in the reference when it has its own directive or its module is rendered whole.
    return path in directives or path.rpartition(".")[0] in directives - {"jlstm", "jlstm.interop"}


def test_every_public_name_has_a_docstring(package):
    missing = [n for n in public_names(package) if not _doc(_target(package, n))]
    assert not missing, f"public names without a docstring: {missing}"


def test_the_layers_methods_have_docstrings(package):
    missing = []
    for m in LAYER_MODULES:
        for c in ("LSTM", "StackedLSTM"):
            cls = _target(package, f"jlstm.nn.{m}.{c}")
            for name in LAYER_METHODS:
                if name in cls.members and not _doc(cls.members[name]):
                    missing.append(f"jlstm.nn.{m}.{c}.{name}")
    assert not missing, f"layer methods without a docstring: {missing}"


def test_every_public_name_is_in_the_api_reference(package):
    directives = api_directives()
    missing = [n for n in public_names(package) if not _documented_in_api(n, directives)]
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_every_name_the_readme_documents_is_in_the_api_reference(package):
    readme = (ROOT / "README.md").read_text()
    names = sorted(set(re.findall(r"\bjlstm(?:\.[A-Za-z_]\w*)+", readme)))
    assert "jlstm.lstm" in names and "jlstm.debug.checked_lstm" in names  # the scan itself works
    directives = api_directives()
    unresolved, missing = [], []
    for name in names:
        try:
            _target(package, name)
        except KeyError:
            unresolved.append(name)
            continue
        if not _documented_in_api(name, directives):
            missing.append(name)
    assert not unresolved, f"README names that do not exist: {unresolved}"
    assert not missing, f"README names missing from the API reference: {missing}"


def _code_links(page: str) -> list[tuple[str, str]]:
    """``(code, object path)`` for every "`code` | [name][path]" and "`code` in [name][path]"."""
    return re.findall(r"`([^`]+)`(?: \| | in )\[[^\]]+\]\[(jlstm\.[\w.]+)\]", page)


def test_the_backward_pages_code_lines_are_in_the_functions_it_names(package):
    links = _code_links((DOCS / "backward.md").read_text())
    assert len(links) >= 20, "the backward page lost its equation -> code tables"
    paths = {p for _, p in links}
    assert {"jlstm.core.backward.backward_step", "jlstm.core.machinery.chunk_backward",
            "jlstm.core.machinery.backward", "jlstm.core.cell.step"} <= paths  # fmt: skip
    squash = lambda s: re.sub(r"\s+", " ", s)  # noqa: E731
    source = {p: squash(_target(package, p).source) for p in paths}
    stale = [(code, path) for code, path in links if squash(code) not in source[path]]
    assert not stale, f"code quoted on docs/backward.md that its function no longer has: {stale}"


def test_the_worked_example_page_shows_what_jlstm_example_prints():
    from jlstm.app import example

    table = example.report().split("\n\nunits:")[0].strip().splitlines()
    page = (DOCS / "worked-example.md").read_text()
    shown = page.split("```text\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert shown == table, "re-paste the output of `jlstm example` into docs/worked-example.md"


def test_the_getting_started_and_sequences_examples_run():
    # The pages' code blocks, in order, in one namespace (sequences.md continues index.md's example).
    blocks = []
    for page in ("index.md", "sequences.md"):
        blocks += re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "<docs>", "exec"), namespace)  # noqa: S102
    assert namespace["hs"].shape == (8, 50, 32)  # the bidirectional stack's last output
    assert namespace["grads"].W.shape == (3, 64)  # from tbptt_value_and_grad
