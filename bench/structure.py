"""Structure figures of a voice2fa tree (lines, largest module and function, import cycles, private-name imports): python bench/structure.py TREE"""
import ast, sys
from pathlib import Path

root = Path(sys.argv[1]); pkg = root / "voice2fa_cli"
mods = {}
for p in sorted(pkg.rglob("*.py")):
    parts = list(p.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__": parts.pop()
    mods[".".join(parts)] = p
lines = {n: len(p.read_text().splitlines()) for n, p in mods.items()}
print("lines", sum(lines.values()), "modules", len(mods))
big = max(lines, key=lines.get); print("largest module", mods[big].relative_to(root), lines[big])
funcs = []
graph = {n: set() for n in mods}; private = []
for n, p in mods.items():
    tree = ast.parse(p.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.append((node.end_lineno - node.lineno + 1, f"{mods[n].relative_to(root)}:{node.name}"))
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = n.split(".")
                if not str(p).endswith("__init__.py"): base = base[:-1]
                base = base[: len(base) - node.level + 1]
                m = ".".join(base + ([node.module] if node.module else []))
            else:
                m = node.module or ""
            if not m.startswith("voice2fa_cli"): continue
            names = [a.name for a in node.names]
            if any(x.startswith("_") and not x.startswith("__") for x in names): private.append((n, m, names))
            for x in names:
                graph[n].add(f"{m}.{x}" if f"{m}.{x}" in mods else m)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods: graph[n].add(a.name)
for n in graph: graph[n] = {m for m in graph[n] if m in mods and m != n}
funcs.sort(reverse=True); print("largest functions", funcs[:3])
print("functions over 60 lines", sum(1 for l, _ in funcs if l > 60))
# SCCs
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in graph:
    if v not in index: sc(v)
print("import cycles (SCCs)", len(sccs), sccs)
print("private-name imports", len(private), private)
