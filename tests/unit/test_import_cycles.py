"""No import cycle in src/, between modules or between packages, type-only imports included.

import-linter's layers contract (``make lint``) keeps the layers pointing down; this test
covers what a layers contract cannot see: a cycle inside one layer, or inside one package.
"""

from __future__ import annotations

import grimp

ROOT = "churnstream"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(ROOT, exclude_type_checking_imports=False)


def _module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    modules = {m for m in graph.modules if m.startswith(ROOT)}
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def test_no_cycle_between_modules() -> None:
    assert _cycles(_module_edges(_graph())) == []


def test_no_cycle_between_packages() -> None:
    """Siblings at every depth: churnstream.a -> churnstream.b -> churnstream.a is a cycle
    even when no single module closes it."""
    between: dict[str, set[str]] = {}
    for source, targets in _module_edges(_graph()).items():
        for target in targets:
            # The two siblings under the closest common package of source and target.
            pa, pb = source.split("."), target.split(".")
            depth = 0
            while depth < min(len(pa), len(pb)) and pa[depth] == pb[depth]:
                depth += 1
            if depth == len(pa) or depth == len(pb):
                continue  # a package and one of its own modules
            sa, sb = ".".join(pa[: depth + 1]), ".".join(pb[: depth + 1])
            between.setdefault(sa, set()).add(sb)
            between.setdefault(sb, set())
    assert _cycles(between) == []


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
