"""The package's shape, checked by walking its source: imports flow one way, only ui/ meets Streamlit, modules
stay short and no block of code is written twice."""

from __future__ import annotations

import ast
import hashlib
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wiseft_explorer"
# Bottom to top: a subpackage may import only those listed before it (docs/ARCHITECTURE.md draws this order).
LAYERS = ("world", "experiment", "store", "results", "data", "core", "evaluation", "training", "demo",
          "presentation", "ui", "cli")
UI_ONLY = ("streamlit", "streamlit_drawable_canvas")
MAX_LINES = 300
BLOCK = 6  # lines: a block this long written twice is a helper waiting to be named


def module_name(path: Path) -> str:
    """Dotted module name of a file in the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module this file imports: top level, inside functions and under TYPE_CHECKING alike."""
    me = module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import sweep` names a module
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package's __init__ counts as that package)."""
    known = modules()
    return {name: {m for m in imports_of(path) if m in known and m != name} for name, path in known.items()}


def layer(module: str) -> str | None:
    """The subpackage a module belongs to (None for the package's own top-level files)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_between_modules():
    assert cycle(graph()) is None


def test_subpackages_import_only_lower_layers():
    wrong = []
    for module, deps in graph().items():
        mine = layer(module)
        for dep in deps:
            theirs = layer(dep)
            if mine and theirs and theirs != mine and LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_every_subpackage_has_a_layer():
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert found == set(LAYERS)


def test_only_ui_imports_streamlit():
    wrong = []
    for module, path in modules().items():
        if layer(module) == "ui":
            continue
        used = {m.split(".")[0] for m in imports_of(path)}
        wrong += [f"{module} imports {lib}" for lib in UI_ONLY if lib in used]
    assert not wrong, "\n".join(wrong)


def test_library_imports_no_pages_and_no_benchmarks():
    wrong = [f"{module} imports {dep}" for module, path in modules().items() for dep in imports_of(path)
             if dep.split(".")[0] in {"pages", "app", "benchmarks", "tests"}]
    assert not wrong


@pytest.mark.parametrize("module", sorted(modules()))
def test_module_is_short(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of lines that carry code: no blanks, comments, imports or lone brackets."""
    kept = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith(("#", "import ", "from ")) or text in {")", "]", "}", "),", "],", "},"}:
            continue
        kept.append((number, text))
    return kept


def test_no_block_written_twice():
    seen: dict[str, list[str]] = defaultdict(list)
    for module, path in modules().items():
        lines = code_lines(path)
        for start in range(len(lines) - BLOCK + 1):
            window = "\n".join(text for _, text in lines[start:start + BLOCK])
            seen[hashlib.sha1(window.encode()).hexdigest()].append(f"{module}:{lines[start][0]}")
    repeated = sorted({", ".join(places) for places in seen.values() if len(places) > 1})
    assert not repeated, "blocks of six lines written twice:\n" + "\n".join(repeated)


def documented_modules(text: str) -> dict[str, set[str]]:
    """folder -> modules, from the rows of a markdown table that start with a `folder/` cell."""
    table = {}
    for row in text.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`\w+/`", cells[0]):
            table[cells[0].strip("`/")] = set(re.findall(r"`(\w+\.py)`", cells[1]))
    return table


def listed_modules() -> dict[str, set[str]]:
    """folder -> modules, from the package's folder listing (without __init__.py)."""
    return {folder: {p.name for p in (PACKAGE / folder).glob("*.py") if p.name != "__init__.py"} for folder in LAYERS}


def test_architecture_doc_matches_folder_listing():
    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    assert documented_modules(doc) == listed_modules()
    order = re.search(r"bottom to top, is (.*?)\.\s", doc.replace("\n", " ")).group(1)
    assert tuple(re.findall(r"`(\w+)`", order)) == LAYERS


def test_readme_architecture_section_matches_folder_listing():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    assert set(documented_modules(section)) == set(LAYERS)
    for folder, names in documented_modules(section).items():
        assert names <= listed_modules()[folder], folder


def test_outside_code_imports_public_names_from_their_subpackage():
    # The app, benchmarks and tests use the API a subpackage exports; a module path is for private names and for
    # module objects that a test patches.
    checkout = PACKAGE.parent
    outside = [checkout / "app.py", *sorted((PACKAGE / "ui" / "app").glob("*.py")),
               *sorted((checkout / "benchmarks").glob("*.py")), *sorted((checkout / "tests").glob("*.py"))]
    wrong = []
    for path in (p for p in outside if p.exists()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.count(".") == 2
                    and node.module.startswith("wiseft_explorer.") and node.module.split(".")[1] in LAYERS):
                continue
            exported = set(getattr(importlib.import_module(node.module.rsplit(".", 1)[0]), "__all__", ()))
            wrong += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name in exported]
    assert not wrong, "\n".join(wrong)
