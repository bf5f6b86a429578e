"""Print the package's module map (module, job, lines) as a Markdown table, in import-floor
order: the first sentence of each module's docstring is its job.

    .venv/bin/python scripts/module_map.py > /tmp/map.md
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rrlib"
#: the pipeline's reading order; anything unlisted follows alphabetically
ORDER = [
    "errors",
    "io",
    "config",
    "data",
    "llm",
    "prompts",
    "methods",
    "predictions",
    "enrich",
    "reasoning",
    "student",
    "finetune",
    "recpie_rl",
    "evaluate",
    "report",
    "workbook",
    "__main__",
]


def job(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return (first.split(". ")[0].rstrip(".") + ".") if first else ""


def rank(path: Path) -> tuple[int, str]:
    top = path.relative_to(ROOT).parts[0].removesuffix(".py")
    return (ORDER.index(top) if top in ORDER else len(ORDER), str(path))


def main() -> int:
    files = sorted((p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts), key=rank)
    print("| module | job | lines |\n|---|---|---:|")
    total = 0
    for p in files:
        n = len(p.read_text().splitlines())
        total += n
        name = "rrlib." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        print(f"| `{name}` | {job(p).replace('|', '/')} | {n} |")
    print(f"| **total** | | **{total}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
