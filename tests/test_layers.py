"""The house keeps its shape: the layers of docs/architecture.md hold, every area is used
through its public surface, and the package the wheel installs is the package the
repository describes.

import-linter reads a package's folder, and in the repository the areas are folders of
their own (pyproject.toml's package-dir maps them onto `clearline.<area>`), so the
contracts run on a copy laid out as the wheel installs it. Benchmarks and notebooks are
outside the package and outside import-linter's reach; the surface rule below reads
their imports too.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
AREAS = ("clearline.ledger", "clearline.features", "clearline.models", "clearline.recon")
OLD_TOP_LEVEL = {"pipelines", "features", "models", "recon", "ledger", "configs"}


def _folder_of(package: str) -> Path:
    """The repository folder holding `package`, by the package-dir mapping."""
    for prefix in sorted(PACKAGE_DIR, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix) :].lstrip(".").replace(".", "/")
            return REPO_ROOT / PACKAGE_DIR[prefix] / rest
    raise AssertionError(f"{package} is under no package-dir entry")


def _module_files() -> dict[str, Path]:
    """Every module of the package, by import name."""
    modules = {}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        for path in _folder_of(package).glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory) -> Path:
    """The package's modules copied into the folders the wheel would put them in."""
    root = tmp_path_factory.mktemp("layout")
    for name, path in _module_files().items():
        target = root / name.replace(".", "/")
        target = target / "__init__.py" if path.stem == "__init__" else target.with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


def test_import_linter_contracts_hold(installed_layout):
    env = {**os.environ, "PYTHONPATH": str(installed_layout)}
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True, text=True, env=env, cwd=installed_layout, timeout=300,
    )  # fmt: skip
    contracts = len(PYPROJECT["tool"]["importlinter"]["contracts"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {contracts} kept, 0 broken." in done.stdout, done.stdout


def test_the_ground_contract_names_every_ground_module():
    ground = {name for name, path in _module_files().items() if path.parent == REPO_ROOT / "clearline"}
    ground -= {"clearline"}
    contract = next(
        c
        for c in PYPROJECT["tool"]["importlinter"]["contracts"]
        if c.get("source_modules", [""])[0].startswith("clearline.a")
    )
    assert set(contract["source_modules"]) == ground, "a ground module escapes the contract (pyproject.toml)"


def test_every_package_folder_is_in_the_distribution():
    listed = {_folder_of(p).resolve() for p in PYPROJECT["tool"]["setuptools"]["packages"]}
    on_disk = {
        init.parent.resolve() for top in set(PACKAGE_DIR.values()) for init in (REPO_ROOT / top).rglob("__init__.py")
    }
    assert on_disk == listed, f"folders not packaged: {sorted(map(str, on_disk - listed))}"


def _sources() -> list[tuple[str, str, ast.AST]]:
    """(module name, file, syntax tree) of the package, the benchmarks and the notebooks."""
    out = [
        (name, str(path.relative_to(REPO_ROOT)), ast.parse(path.read_text())) for name, path in _module_files().items()
    ]
    for path in sorted((REPO_ROOT / "bench").glob("*.py")):
        out.append((f"bench.{path.stem}", str(path.relative_to(REPO_ROOT)), ast.parse(path.read_text())))
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out.append((f"notebooks.{path.stem}", str(path.relative_to(REPO_ROOT)), ast.parse(code)))
    return out


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every absolute import, also those inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def _area_of(module: str) -> str | None:
    return next((a for a in AREAS if module == a or module.startswith(a + ".")), None)


def test_areas_are_used_only_through_their_public_surface():
    """From outside an area, only `clearline.<area>` and the modules its `__all__` names."""
    wrong = []
    for name, file, tree in _sources():
        for line, module, names in _imports(tree):
            area = _area_of(module)
            if area is None or area == _area_of(name):
                continue
            public = importlib.import_module(area).__all__
            if module == area:
                wrong += [f"{file}:{line} imports {area}.{n}" for n in names if n not in public]
            elif module.removeprefix(area + ".") not in public:
                wrong.append(f"{file}:{line} imports {module}")
    assert not wrong, "reaches into an area's internals:\n" + "\n".join(wrong)


def test_every_public_name_resolves_and_none_hides_a_submodule():
    for area in AREAS:
        package = importlib.import_module(area)
        submodules = {p.stem for p in _folder_of(area).glob("*.py")} | {
            p.parent.name for p in _folder_of(area).glob("*/__init__.py")
        }
        for public in package.__all__:
            value = getattr(package, public)
            if public in submodules:
                assert getattr(value, "__name__", None) == f"{area}.{public}", (
                    f"{area}.{public} names something other than the module of that name"
                )


def test_nothing_imports_the_folders_by_their_old_top_level_names():
    wrong = [
        f"{file}:{line} imports {module}"
        for name, file, tree in _sources()
        for line, module, _ in _imports(tree)
        if module.split(".")[0] in OLD_TOP_LEVEL
    ]
    assert not wrong, "\n".join(wrong)
