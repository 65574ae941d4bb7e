"""The package's import graph: no module reaches itself again through its imports (import-linter checks the layers)."""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("rtseg")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_runtime_never_imports_the_offline_tools() -> None:
    graph = grimp.build_graph("rtseg")
    runtime = [m for m in graph.modules if not m.startswith(("rtseg.offline", "rtseg.cli"))]
    offenders = [m for m in runtime if any(i.startswith("rtseg.offline") for i in graph.find_modules_directly_imported_by(m))]
    assert offenders == []
