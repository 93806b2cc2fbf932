"""The shape of the code: which modules may import which, and how big a module may grow.

No import cycle anywhere in ivr/: data flows one way (transports → session →
audio → dialog → queue/agents → storage), and where a lower module needs
something of a higher one it names a small Protocol of its own (the agent
leg's QueueLink, the SIP call's CallHost) instead of importing it.

Every import counts: at module level, inside functions, and under
TYPE_CHECKING, since each of them is a dependency of the design even when
Python would not trip over it at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ivr"
COVERED = "ivr.transports.sip"
#: A module longer than this is doing more than one thing; split it by what its parts are about.
MAX_LINES = 400


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The ivr modules one import statement names; `from pkg import sub` is the submodule, not pkg."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module prefix of an imported name (a class imported from a module belongs to the module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _imported(node, module, path.name == "__init__.py", modules):
                owner = _owner(name, modules)
                if owner is not None and owner != module:
                    targets.add(owner)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_every_kind_of_import():
    """call.py imports the transaction layer at module level; endpoint.py imports call.py and register.py."""
    graph = import_graph()
    assert "ivr.transports.sip.transaction" in graph["ivr.transports.sip.call"]
    assert {"ivr.transports.sip.call", "ivr.transports.sip.register"} <= graph["ivr.transports.sip.endpoint"]
    assert "ivr.runtime" in graph["ivr.transports.sip.call"]  # under TYPE_CHECKING


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def test_the_agent_leg_does_not_name_the_queue_leg():
    """The queue leg creates the agent leg; the agent leg knows it only as a QueueLink."""
    assert "ivr.session.queue_leg" not in import_graph()["ivr.session.agent_leg"]


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in module_names().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_the_transaction_layer_imports_nothing_above_it():
    """transaction.py is below dialog, call, endpoint and register: it may use message.py and nothing else of sip."""
    sip = {m for m in import_graph()["ivr.transports.sip.transaction"] if m.startswith(COVERED + ".")}
    assert sip == {"ivr.transports.sip.message"}
