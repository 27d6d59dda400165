"""docs/architecture.md is true to the tree: its module map names every package and module of
src/churnstream, and every path the page names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "churnstream"
PAGE = REPO / "docs" / "architecture.md"
MAP_HEADING = "## Module map"
#: The map's row of the top-level modules.
CORE_ROW = "src/churnstream/"

CODE = re.compile(r"`([^`]+)`")
PY_PATH = re.compile(r"^([\w./]+\.py)(?::\w+)?$")


def _sections() -> tuple[str, str]:
    """The page's prose without its module map, and the module map (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    start = text.index(MAP_HEADING)
    end = text.find("\n## ", start + len(MAP_HEADING))
    end = len(text) if end == -1 else end
    return text[:start] + text[end:], text[start:end]


def _map_rows() -> dict[str, set[str]]:
    """Each row of the map: its directory (relative to the package) and the modules it names."""
    rows: dict[str, set[str]] = {}
    for line in _sections()[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 2:
            continue
        label = CODE.findall(cells[0])[0]
        directory = "" if label == CORE_ROW else label.rstrip("/")
        rows[directory] = {c for c in CODE.findall("|".join(cells[1:])) if c.endswith(".py")}
    return rows


def _tree() -> dict[str, set[str]]:
    """Each package directory of src/churnstream and its modules (``__init__.py`` aside)."""
    tree: dict[str, set[str]] = {}
    for init in PACKAGE.rglob("__init__.py"):
        directory = init.parent.relative_to(PACKAGE).as_posix()
        modules = {p.name for p in init.parent.glob("*.py") if p.name != "__init__.py"}
        tree["" if directory == "." else directory] = modules
    return tree


def test_the_map_has_rows() -> None:
    # guards the parser: a map it cannot read would compare empty with empty below
    rows = _map_rows()
    assert "recovery.py" in rows["streaming"]
    assert {"render_worker.py", "writer.py", "render.py"} <= rows["reports"]
    assert "bounded.py" in rows["kafka"]


def test_the_map_names_every_package_and_module() -> None:
    rows, tree = _map_rows(), _tree()
    assert sorted(rows) == sorted(tree), "packages in the map differ from the tree"
    differences = {
        directory or CORE_ROW: {
            "missing from the map": sorted(tree[directory] - rows[directory]),
            "not in the tree": sorted(rows[directory] - tree[directory]),
        }
        for directory in tree
        if rows[directory] != tree[directory]
    }
    assert not differences, differences


def test_every_path_on_the_page_exists() -> None:
    prose = _sections()[0]
    named = [m.group(1) for c in CODE.findall(prose) if (m := PY_PATH.match(c))]
    assert "streaming/batches.py" in named  # guards the pattern
    missing = [
        path
        for path in named
        if not (REPO / path if path.startswith("tests/") else PACKAGE / path).is_file()
    ]
    assert not missing, missing
