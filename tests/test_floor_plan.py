"""The floor plan's import rules (README, Development), checked on every .py file of the three packages.

- dataset_doctor outside dataset_doctor/cli/ imports neither trainer nor reports;
- nothing outside dataset_doctor/cli/ imports dataset_doctor.cli (the CLI is the one room that imports all);
- trainer never imports reports (the CLI, not the training loop, writes the training report);
- reports imports trainer only for the run-directory contract (trainer.run_dir), evaluation results
  (trainer.evaluation) and the diagnosis of a run (trainer.diagnosis: pure functions over those results),
  never the engine, the model or the data pipeline.

Every import counts: at module level, lazy ones inside functions, relative ones, and importlib.import_module with a
literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dataset_doctor", "trainer", "reports")
REPORTS_MAY_IMPORT = ("trainer.run_dir", "trainer.evaluation", "trainer.diagnosis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, wherever it stands."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from trainer import loop` imports trainer.loop
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.append((node.lineno, node.args[0].value))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rules(module: str, source: str, is_package: bool = False) -> list[str]:
    """Why each import of `module` breaks the floor plan (empty: it keeps it)."""
    problems = []
    for line, name in imported_modules(module, source, is_package):
        where = f"{module}:{line} imports {name}"
        in_cli = _within(module, "dataset_doctor.cli")
        if _within(name, "dataset_doctor.cli") and not in_cli and module != "dataset_doctor.__main__":
            problems.append(f"{where}: only the CLI imports the CLI")
        if _within(module, "dataset_doctor") and not in_cli and module != "dataset_doctor.__main__" and (
                _within(name, "trainer") or _within(name, "reports")):
            problems.append(f"{where}: dataset_doctor (outside cli/) imports neither trainer nor reports")
        if _within(module, "trainer") and _within(name, "reports"):
            problems.append(f"{where}: trainer never imports reports")
        if (_within(module, "reports") and _within(name, "trainer") and name != "trainer"
                and not any(_within(name, allowed) for allowed in REPORTS_MAY_IMPORT)):
            problems.append(f"{where}: reports imports trainer only for {', '.join(REPORTS_MAY_IMPORT)}")
    return problems


def package_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def test_every_module_keeps_the_import_rules():
    problems = [problem for path in package_files()
                for problem in broken_rules(module_name(path), path.read_text(encoding="utf-8"),
                                            path.name == "__init__.py")]
    assert not problems, "\n".join(problems)


def test_every_folder_of_the_packages_is_a_package():
    """pyproject's packages.find only installs folders with an __init__.py."""
    folders = {path.parent for path in package_files()}
    assert all((folder / "__init__.py").is_file() for folder in folders), sorted(
        str(folder) for folder in folders if not (folder / "__init__.py").is_file())


@pytest.mark.parametrize(("module", "source"), [
    ("trainer.loop", "import reports"),
    ("trainer.loop", "def finish():\n    from reports.training_report import build_training_report\n"),
    ("trainer.data.dataset", "from reports import html"),
    ("dataset_doctor.dataset.index", "import trainer.model.loss"),
    ("dataset_doctor.audit.runner", "def f():\n    from reports.audit_report import write_audit_report\n"),
    ("dataset_doctor.fix", "from dataset_doctor.cli.app import console"),
    ("dataset_doctor.audit.runner", "from .. import cli"),
    ("reports.training_report", "from trainer.loop import train"),
    ("reports.html", "from trainer import setup"),
    ("reports.html", "import importlib\nimportlib.import_module('trainer.model.detector')"),
])
def test_the_rules_catch_a_forbidden_import(module, source):
    assert broken_rules(module, source)


@pytest.mark.parametrize(("module", "source"), [
    ("dataset_doctor.cli.train", "from trainer.launch import launch_training\nfrom reports import html"),
    ("reports.training_report", "from trainer import run_dir as files\nfrom trainer.evaluation import BACKGROUND"),
    ("reports.val_examples", "from trainer.evaluation.confusion import pair_detections"),
    ("trainer.setup", "from dataset_doctor.dataset.index import build_index"),
])
def test_the_rules_allow_what_the_plan_allows(module, source):
    assert not broken_rules(module, source)
