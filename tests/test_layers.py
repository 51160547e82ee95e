"""The package's shape: every import in dike/ (module level and inside functions) goes to its own layer or below, in
the order committed in pyproject.toml ([tool.dike] layers), and no import cycle exists."""
import ast, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dike"


def layers() -> list[list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dike"]["layers"]


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        if p.name == "_modidx.py": continue
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, int]]]:
    "module -> {(imported dike module, line)} for every import statement anywhere in its source."
    out = {}
    for m, p in mods.items():
        is_pkg, edges = p.name == "__init__.py", set()
        for n in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(n, ast.Import): names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                base = m.split(".") if is_pkg else m.split(".")[:-1]
                if n.level: base = base[:len(base) - (n.level - 1)]
                b = ".".join(base + [n.module] if n.level and n.module else base) if n.level else n.module
                names = [b] + [f"{b}.{a.name}" for a in n.names]
            for t in names:
                while t and t not in mods: t = t.rpartition(".")[0]
                if t and t != m and t != "dike": edges.add((t, n.lineno))
        out[m] = edges
    return out


def layer_of(m: str, order) -> int:
    best = [(len(pre), i) for i, layer in enumerate(order) for pre in layer if m == pre or m.startswith(pre + ".")]
    assert best, f"{m} is in no layer of pyproject.toml [tool.dike] layers: add it"
    return max(best)[1]


def test_every_module_has_a_layer_and_imports_only_downwards():
    order, mods = layers(), modules()
    bad = [f"{m} (layer {layer_of(m, order) + 1}) imports {t} (layer {layer_of(t, order) + 1}) at {mods[m].name}:{line}"
           for m, edges in imports(mods).items() for t, line in sorted(edges)
           if layer_of(t, order) > layer_of(m, order)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle():
    g = {m: {t for t, _ in e} for m, e in imports(modules()).items()}
    state, stack, cycles = {}, [], []
    def visit(m):
        state[m] = 1; stack.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1: cycles.append(stack[stack.index(t):] + [t])
            elif not state.get(t): visit(t)
        stack.pop(); state[m] = 2
    for m in sorted(g):
        if not state.get(m): visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    "The walk would catch an upward import hidden in a function, and a relative one."
    mods = {"dike.core": tmp_path / "core.py", "dike.cli": tmp_path / "cli.py"}
    mods["dike.core"].write_text("def f():\n    from .cli import main\n    import dike.cli\n")
    mods["dike.cli"].write_text("from .core import f\n")
    e = imports(mods)
    assert e["dike.core"] == {("dike.cli", 2), ("dike.cli", 3)} and e["dike.cli"] == {("dike.core", 1)}
    assert layer_of("dike.bench.bbq", layers()) > layer_of("dike.evaluate", layers())


def test_no_module_over_600_lines():
    "A module holds one job: none of dike/ is over 600 lines (the generated _modidx.py aside)."
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}; split them by job"
