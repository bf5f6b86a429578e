"""The package's shape: data flows one way, and so do imports. Every rrlib import (at module level
or inside a function) goes from a layer to the same or an earlier one in LAYERS; nothing imports a
later pipeline step. Read from the source (ast), so a lazy import inside a function counts too."""

import ast
from pathlib import Path

RRLIB = Path(__file__).resolve().parents[1] / "rrlib"

#: shared layers first, then the pipeline steps in the order their notebooks run
LAYERS = (
    "errors",
    "io",
    "config",
    "data",  # 01
    "predictions",  # the contract every method writes through
    "llm",
    "prompts",
    "methods",  # the registry and one module per family
    "student",  # the student model, used by 06 and 07 alike
    "enrich",  # 02-04
    "reasoning",  # 05
    "finetune",  # 06
    "evaluate",  # 07
    "report",  # 08
    "workbook",  # the runner over all of them
    "__main__",
)
#: known climbs, each an open item with its reason (kept short: every entry is a debt)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rrlib"):
            names = [f"rrlib.{a.name}" for a in node.names] if node.module == "rrlib" else [node.module]
            yield from ((n, node.lineno) for n in names)
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.startswith("rrlib"))


def test_every_module_sits_in_a_known_layer():
    layers = {p.relative_to(RRLIB).parts[0].removesuffix(".py") for p in RRLIB.rglob("*.py")}
    assert layers - set(LAYERS) - {"__init__", "resources"} == set()


def test_no_import_climbs_to_a_later_step():
    rank = {name: i for i, name in enumerate(LAYERS)}
    climbs = []
    for path in sorted(RRLIB.rglob("*.py")):
        rel = path.relative_to(RRLIB)
        me = rel.parts[0].removesuffix(".py")
        if me not in rank:
            continue
        for module, line in _imports(path):
            other = _layer(module)
            if other in rank and rank[other] > rank[me]:
                climbs.append(f"{rel}:{line} imports {module} ({me} comes before {other})")
    assert climbs == []


def test_prompts_never_import_methods():
    """Templates and parsing know no recommender: what a method shows comes from the registry, read
    by the student's prompts (rrlib/student/prompts.py) after it."""
    found = [(p.name, m) for p in (RRLIB / "prompts").rglob("*.py") for m, _ in _imports(p) if _layer(m) == "methods"]
    assert found == []
