"""Imports point down the layers of docs/architecture.md, and no package imports itself in a cycle.

Every ``import fastdream.x`` / ``from fastdream.x import ...`` of the package's source is read (with ast,
function-level imports included) and checked against the layer of the importing module."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "fastdream"

# higher numbers sit higher; a module may import its own layer or lower ones (docs/architecture.md)
LAYERS = {
    "cli": 9, "web": 9, "__main__": 9,
    "api": 8, "objectives": 8, "bench": 8, "__init__": 8,   # the user-facing facades
    "video": 7, "distill": 7,                              # apps
    "presets": 6, "objective_text": 6,                     # named dreams; the parser of objective strings
    "engine": 5, "stylize": 5, "featvis": 5,               # the optimization loops
    "detectors": 4, "metrics": 4,                          # face detector; metrics and the Lite2 judge
    "backbones": 3, "precision": 3,
    "ops": 2, "reference": 1,
    # utilities every layer may use
    "_native": 0, "errors": 0, "imageio": 0, "report": 0, "process": 0, "progress": 0, "convert": 0,
}


def _top(module: str) -> str:
    """The layer name of a module: its top-level package, except a package's ``api`` facade
    (``fastdream.distill.api``, ``fastdream.featvis.api``...), which belongs with ``fastdream.api``."""
    parts = module.split(".")
    if len(parts) > 2 and parts[-1] == "api":
        return "api"
    return parts[1] if len(parts) > 1 else "__init__"


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    pkg = "fastdream." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("fastdream")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = pkg.split(".")[:-node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "fastdream":  # from fastdream import x: x is the module
                out += [(node.lineno, f"fastdream.{a.name}") for a in node.names]
            elif mod.startswith("fastdream."):
                out.append((node.lineno, mod))
    return out


def _sources():
    return sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = sorted({_top("fastdream." + ".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in _sources()}
                     - set(LAYERS))
    assert not missing, f"modules without a layer in docs/architecture.md and LAYERS: {missing}"


def test_imports_point_down():
    bad = []
    for p in _sources():
        name = "fastdream." + ".".join(p.relative_to(ROOT).with_suffix("").parts)
        me = _top(name)
        for line, mod in _imports(p):
            if _package(mod) == _package(name):  # within a package (its __init__ may re-export its facade)
                continue
            other = _top(mod)
            if other in LAYERS and LAYERS[other] > LAYERS[me]:
                bad.append(f"{p.relative_to(ROOT.parent)}:{line}: {me} (layer {LAYERS[me]}) imports {mod} "
                           f"(layer {LAYERS[other]})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles_between_packages():
    """Within a layer, packages may use each other only one way (no A -> B -> A)."""
    edges: dict[str, set[str]] = {}
    for p in _sources():
        name = "fastdream." + ".".join(p.relative_to(ROOT).with_suffix("").parts)
        me = _top(name)
        for _, mod in _imports(p):
            if _package(mod) == _package(name):
                continue
            other = _top(mod)
            if other != me and other in LAYERS:
                edges.setdefault(me, set()).add(other)
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, ()))
    assert not cycles, f"packages that import each other: {cycles}"


@pytest.mark.parametrize("module", ["cli/common.py", "cli/style.py"])
def test_cli_modules_do_not_import_each_other_in_a_cycle(module):
    """cli/common.py is imported by every command; it imports no command module back."""
    if module == "cli/common.py":
        mods = {m for _, m in _imports(ROOT / module)}
        assert not any(m.startswith("fastdream.cli.") and m != "fastdream.cli.common" for m in mods), mods
    else:
        assert "fastdream.cli.style" not in {m for _, m in _imports(ROOT / "cli" / "common.py")}
