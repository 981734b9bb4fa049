#!/usr/bin/env python3
"""Bounded mutation testing of the guarantee-holding modules (cosmic-ray's operators).

Each module listed in ``tools/mutation/guarded.toml`` is mutated one mutant at a time and only
the tests mapped to it are run. Mutants are applied in a scratch copy of ``src/`` and ``tests/``
(never in the checkout: other processes keep importing the real code, and an interrupted run
cannot leave a mutant behind). A surviving mutant fails the run unless
``tools/mutation/equivalent.toml`` lists it as equivalent, keyed by module, operator and the
mutated line's text before and after (not by line number or mutant index), so edits elsewhere
in the module do not invalidate the list.

Usage::

    tools/mutation/run.py --module src/concierge/actors/sso/vault.py   # one module, all mutants
    tools/mutation/run.py --all --report mutation.json                  # everything (slow)
    tools/mutation/run.py --changed-since HEAD~1 --sample 30 --budget-s 300   # the CI step

With ``--changed-since`` (CI) only modules marked ``enforced = true`` in guarded.toml (a full
run left no unexplained survivor) fail the run; the others' survivors are printed.

Exit status: 0 no unexplained survivor, 1 unexplained survivors, 2 usage or a red baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODULE_LEVEL = "<module>"


@dataclass
class Mutant:
    """One mutation of one module, identified independently of line numbers."""

    module: str
    operator: str
    occurrence: int
    line: int
    definition: str
    before: str = ""
    after: str = ""
    outcome: str = "pending"  # killed | survived | timeout | incompetent | no-test | not-run
    equivalent: str = ""

    def key(self) -> str:
        """Stable across line shifts: what changed, not where."""
        return f"{self.module}|{self.operator}|{self.before}|{self.after}"


@dataclass
class ModuleReport:
    path: str
    tests: list[str]
    baseline_s: float = 0.0
    mutants: list[Mutant] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for m in self.mutants if m.outcome == outcome)


def load_config() -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, str]]]:
    guarded = tomllib.loads((HERE / "guarded.toml").read_text())
    modules = {entry["path"]: entry for entry in guarded["module"]}
    equivalent = tomllib.loads((HERE / "equivalent.toml").read_text()).get("equivalent", [])
    return guarded, modules, equivalent


def changed_modules(base: str, guarded: dict[str, dict[str, Any]]) -> list[str] | None:
    """Guarded modules whose source changed since ``base`` (None: ``base`` is unknown)."""
    probe = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", base], cwd=ROOT, capture_output=True, check=False
    )
    if probe.returncode != 0:
        return None
    diff = subprocess.run(
        ["git", "diff", "--name-only", base, "HEAD", "--", "src"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    changed = set(diff.stdout.split())
    return [path for path in guarded if path in changed]


def enumerate_mutants(copy: Path, module: dict[str, Any], operators: list[str]) -> list[Mutant]:
    """Every position each operator can mutate, numbered the way cosmic-ray applies them."""
    import cosmic_ray.plugins
    from cosmic_ray.ast import ast_nodes, get_ast_from_path
    from cosmic_ray.ast.ast_query import ASTQuery

    tree = get_ast_from_path(copy / module["path"])
    wanted = set(module.get("definitions", []))
    source_lines = (copy / module["path"]).read_text().splitlines()
    found: list[Mutant] = []
    for name in operators:
        operator = cosmic_ray.plugins.get_operator(name)()
        occurrence = 0
        for node in ast_nodes(tree):
            for start, _end in operator.mutation_positions(node):
                definition = ASTQuery(node).get_definition_name() or MODULE_LEVEL
                if not wanted or definition in wanted:
                    text = source_lines[start[0] - 1].strip()
                    found.append(Mutant(module["path"], name, occurrence, start[0], definition, before=text))
                occurrence += 1
    return found


def sample(mutants: list[Mutant], limit: int) -> list[Mutant]:
    """A fixed, line-shift-proof subset: the ``limit`` mutants with the lowest content hash."""
    if limit <= 0 or len(mutants) <= limit:
        return mutants

    def rank(m: Mutant) -> str:
        return hashlib.sha256(f"{m.module}|{m.operator}|{m.before}|{m.occurrence}".encode()).hexdigest()

    chosen = set(map(id, sorted(mutants, key=rank)[:limit]))
    return [m for m in mutants if id(m) in chosen]


def scratch_copy() -> Path:
    """src/, tests/ and pyproject.toml in a temporary tree (mutants are written only there)."""
    copy = Path(tempfile.mkdtemp(prefix="cc-mutation-"))
    copy.chmod(0o755)  # tests run helpers as other uids (setpriv): they must reach tests/ like in a checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore, symlinks=True)
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy / "src"), PYTHONDONTWRITEBYTECODE="1")
    sys.path.insert(0, str(ROOT / "src"))
    from concierge.testing.qapi import find_reference

    schema = find_reference("qga-qapi-schema.json")
    if schema is not None and "CONCIERGE_SHARED" not in env:
        env["CONCIERGE_SHARED"] = str(schema.parent.parent)  # the copy is not beside ../shared
    return env


def pytest_command(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


def run_module(copy: Path, module: dict[str, Any], mutants: list[Mutant], deadline: float) -> ModuleReport:
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_item import MutationSpec, TestOutcome, WorkerOutcome

    report = ModuleReport(module["path"], list(module["tests"]), mutants=mutants)
    command = pytest_command(module["tests"])
    started = time.monotonic()
    baseline = subprocess.run(command, cwd=copy, capture_output=True, text=True, check=False)
    report.baseline_s = time.monotonic() - started
    if baseline.returncode != 0:
        print(baseline.stdout[-3000:], file=sys.stderr)
        raise SystemExit(f"mutation: the tests of {module['path']} fail without any mutant; fix them first")
    timeout = max(15.0, 3 * report.baseline_s)  # a mutant that hangs the tests counts as killed
    for mutant in mutants:
        if time.monotonic() > deadline:
            mutant.outcome = "not-run"
            continue
        spec = MutationSpec(
            module_path=str(copy / mutant.module),
            operator_name=mutant.operator,
            occurrence=mutant.occurrence,
            start_pos=(mutant.line, 0),
            end_pos=(mutant.line, 1),
        )
        result = mutate_and_test([spec], shlex.join(command), timeout)
        if result.worker_outcome == WorkerOutcome.NO_TEST:
            mutant.outcome = "no-test"
            continue
        if result.worker_outcome != WorkerOutcome.NORMAL:
            mutant.outcome = "incompetent"
        elif result.test_outcome == TestOutcome.SURVIVED:
            mutant.outcome = "survived"
        elif result.test_outcome == TestOutcome.KILLED and "timeout" in (result.output or "").lower()[-200:]:
            mutant.outcome = "timeout"
        else:
            mutant.outcome = "killed" if result.test_outcome == TestOutcome.KILLED else "incompetent"
        diff = (result.diff or "").splitlines()
        removed = [ln[1:].strip() for ln in diff if ln.startswith("-") and not ln.startswith("---")]
        added = [ln[1:].strip() for ln in diff if ln.startswith("+") and not ln.startswith("+++")]
        mutant.before = " / ".join(removed) or mutant.before
        mutant.after = " / ".join(added)
        print(f"  {mutant.outcome:<11} {mutant.operator:<45} L{mutant.line}: {mutant.after[:70]}", flush=True)
    return report


def classify(reports: list[ModuleReport], equivalent: list[dict[str, str]]) -> list[Mutant]:
    """Mark listed equivalents; return the unexplained survivors."""
    known = {f"{e['module']}|{e['operator']}|{e['before']}|{e['after']}": e["reason"] for e in equivalent}
    unexplained = []
    for report in reports:
        for mutant in report.mutants:
            if mutant.outcome != "survived":
                continue
            mutant.equivalent = known.get(mutant.key(), "")
            if not mutant.equivalent:
                unexplained.append(mutant)
    return unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", default=[], help="a guarded module path (repeatable)")
    parser.add_argument("--all", action="store_true", help="every guarded module")
    parser.add_argument("--changed-since", metavar="REV", help="guarded modules changed since REV (CI)")
    parser.add_argument("--sample", type=int, default=0, help="at most N mutants per module (fixed choice)")
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop starting mutants after this long")
    parser.add_argument("--report", type=Path, help="write every mutant's outcome as JSON")
    args = parser.parse_args(argv)
    guarded, modules, equivalent = load_config()
    selected: list[str] = list(args.module)
    if args.all:
        selected = list(modules)
    elif args.changed_since:
        changed = changed_modules(args.changed_since, modules)
        selected = changed or list(guarded["ci"]["fallback"])
        why = "changed since " + args.changed_since if changed else "no guarded module changed: fixed sample"
        print(f"mutation: {why}: {', '.join(selected)}")
    unknown = [path for path in selected if path not in modules]
    if not selected or unknown:
        parser.error(f"unknown or no modules: {unknown or 'none selected'} (see tools/mutation/guarded.toml)")
    copy = scratch_copy()
    os.environ.update(test_env(copy))
    cwd = Path.cwd()
    os.chdir(copy)
    deadline = time.monotonic() + args.budget_s if args.budget_s > 0 else float("inf")
    reports = []
    try:
        for path in selected:
            mutants = sample(enumerate_mutants(copy, modules[path], guarded["operators"]), args.sample)
            print(f"mutation: {path}: {len(mutants)} mutants, tests {' '.join(modules[path]['tests'])}", flush=True)
            reports.append(run_module(copy, modules[path], mutants, deadline))
    finally:
        os.chdir(cwd)
        shutil.rmtree(copy, ignore_errors=True)
    unexplained = classify(reports, equivalent)
    if args.changed_since:
        # CI: a module is enforced once a full run left no unexplained survivor (guarded.toml);
        # until then its survivors are reported but cannot block someone else's change
        pending = [m for m in unexplained if not modules[m.module].get("enforced", False)]
        for mutant in pending:
            print(f"not yet enforced: {mutant.module} {mutant.operator}: {mutant.before} -> {mutant.after}")
        unexplained = [m for m in unexplained if m not in pending]
    for report in reports:
        print(
            f"mutation: {report.path}: {len(report.mutants)} mutants, {report.count('killed')} killed, "
            f"{report.count('timeout')} timed out, {report.count('survived')} survived "
            f"({sum(1 for m in report.mutants if m.equivalent)} equivalent), {report.count('not-run')} not run "
            f"(budget), baseline {report.baseline_s:.1f} s"
        )
    if args.report:
        args.report.write_text(json.dumps([asdict(r) for r in reports], indent=1) + "\n")
    for mutant in unexplained:
        print(
            f"SURVIVOR {mutant.module} [{mutant.definition}] {mutant.operator}\n"
            f"  - {mutant.before}\n  + {mutant.after}",
            file=sys.stderr,
        )
    if unexplained:
        print(
            f"mutation: {len(unexplained)} surviving mutant(s) not in tools/mutation/equivalent.toml: "
            "kill each with a test, or list it there with the reason it is equivalent",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
