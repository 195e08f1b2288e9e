"""The package's structure, checked from its source with `ast`: no import cycle (lazy and
TYPE_CHECKING imports count), no module importing another's private names, and the arrows the
design fixes (the stores under the policy, the sandbox apart from what it tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "voice2fa_cli"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not str(MODULES[importer]).endswith("__init__.py"):
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in module `name`,
    wherever it stands (top level, a function, `if TYPE_CHECKING:`)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((_resolve(name, node), [alias.name for alias in node.names], node.lineno))
    return out


def edges() -> dict[str, set[str]]:
    """Module → the package's modules it imports. `from P import m` where P.m is a module is
    an edge to P.m; otherwise to P itself."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for module, names, _ in imports(name):
            if not module.startswith(PACKAGE):
                continue
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
            if len(targets) < len(names) or not names:
                targets.add(module)
            graph[name] |= {t for t in targets if t in MODULES and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_is_read_whole():
    assert {"voice2fa_cli.cli", "voice2fa_cli.policy", "voice2fa_cli.stores.base", "voice2fa_cli.stores.sqlite",
            "voice2fa_cli.serve.core", "voice2fa_cli.sandbox.server"} <= set(MODULES)
    graph = edges()
    assert "voice2fa_cli.policy" in graph["voice2fa_cli.stores.sqlite"]
    assert "voice2fa_cli.stores.base" in graph["voice2fa_cli.stores.redis_keys"]


def test_the_cycle_finder_finds_a_cycle():
    """A finder that never fails would pass any package."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(edges()) == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name in MODULES:
        for module, names, line in imports(name):
            if not module.startswith(PACKAGE):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                offenders.append(f"{MODULES[name].relative_to(ROOT)}:{line} {module} {private}")
    assert offenders == []


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        for w in graph[v] - seen:
            seen.add(w)
            todo.append(w)
    return seen


# The stores sit under the policy: they import only it, the errors, the pure helpers they store
# with (otp's keyed hash, owned's file checks) and each other; never the settings or a face.
STORE_MAY_IMPORT = {"voice2fa_cli.policy", "voice2fa_cli.errors", "voice2fa_cli.otp", "voice2fa_cli.owned"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("voice2fa_cli.stores")))
def test_a_store_imports_only_the_policy_errors_and_stores(name):
    outside = {m for m in edges()[name] if not m.startswith("voice2fa_cli.stores") and m not in STORE_MAY_IMPORT}
    assert outside == set()


def test_the_policy_imports_only_the_errors():
    assert edges()["voice2fa_cli.policy"] <= {"voice2fa_cli.errors", "voice2fa_cli.phone"}
    assert "voice2fa_cli.phone" not in _reach(edges(), "voice2fa_cli.errors")


# The sandbox stands for the platform: it may use the stdlib-only signal helper its foreground
# server runs under, nothing of what it tests (the webhook, signatures, the REST client, speech).
SANDBOX_MAY_IMPORT = {"voice2fa_cli.signals"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("voice2fa_cli.sandbox")))
def test_the_sandbox_shares_no_code_with_what_it_tests(name):
    outside = {m for m in edges()[name] if not m.startswith("voice2fa_cli.sandbox")}
    assert outside - SANDBOX_MAY_IMPORT == set()
    assert edges()["voice2fa_cli.signals"] == set()


def test_flow_and_serve_never_import_the_sandbox():
    graph = edges()
    for name in ("voice2fa_cli.flow", "voice2fa_cli.serve.core", "voice2fa_cli.serve.server"):
        assert not any(m.startswith("voice2fa_cli.sandbox") for m in graph[name]), name


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# The generic HTTP layer knows no app: the webhook, serve's API (and later the console) use it.
@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, ("voice2fa_cli.web",))))
def test_the_web_layer_knows_no_app(name):
    assert edges()[name] - {"voice2fa_cli.errors"} <= {n for n in MODULES if _within(n, ("voice2fa_cli.web",))}


# The platform's client and signatures know nothing above them (the package's version aside).
@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, ("voice2fa_cli.signalwire",))))
def test_the_platform_layer_knows_nothing_above_it(name):
    allowed = {"voice2fa_cli", "voice2fa_cli.errors"} | {n for n in MODULES if _within(n, ("voice2fa_cli.signalwire",))}
    assert edges()[name] <= allowed


FACES = ("voice2fa_cli.cli", "voice2fa_cli.commands", "voice2fa_cli.serve", "voice2fa_cli.__main__")
USE_CASES = ("voice2fa_cli.flow", "voice2fa_cli.sessions", "voice2fa_cli.doctor", "voice2fa_cli.stand_in")


# The voice channel sits under the use cases: it never imports one, nor a face.
@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, ("voice2fa_cli.voice",))))
def test_the_voice_channel_imports_no_use_case_or_face(name):
    assert {m for m in edges()[name] if _within(m, FACES + USE_CASES)} == set()


# Arrows run one way: no use case imports a face; only the Click layer imports the commands, and
# only the Click layer (the serve command) reaches serve from outside it.
@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, USE_CASES)))
def test_a_use_case_imports_no_face(name):
    assert {m for m in edges()[name] if _within(m, FACES)} == set()


def test_only_the_click_layer_imports_the_commands_and_serve():
    graph = edges()
    click_layer = ("voice2fa_cli.cli", "voice2fa_cli.commands", "voice2fa_cli.__main__")
    for name, targets in graph.items():
        if _within(name, click_layer):
            continue
        assert not any(_within(m, ("voice2fa_cli.commands", "voice2fa_cli.cli")) for m in targets), name
        if not _within(name, ("voice2fa_cli.serve",)):
            assert not any(_within(m, ("voice2fa_cli.serve",)) for m in targets), name
