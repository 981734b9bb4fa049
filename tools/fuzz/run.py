#!/usr/bin/env python3
"""Run the coverage-guided fuzz targets (atheris/libFuzzer) for a bounded time; fail on a finding.

    .venv/bin/python tools/fuzz/run.py                        every target, 100 s in all (CI)
    .venv/bin/python tools/fuzz/run.py --total 600 qga        one target for ten minutes
    .venv/bin/python tools/fuzz/run.py --runs 10000000 spice  a long run: stop after that many inputs
    .venv/bin/python tools/fuzz/run.py --replay FILE qga      one input (or a directory), no atheris
    .venv/bin/python tools/fuzz/run.py --merge DIR qga        minimise DIR + the corpus into the corpus

Each target runs in its own process (libFuzzer owns the process), seeded from the committed
corpus ``tools/fuzz/corpus/<target>/``, which it never writes: new inputs go to a temporary
directory that is removed afterwards (or to ``--keep DIR``). A finding (uncaught exception,
desync, per-input timeout, memory blow-up) makes the run fail and prints the input's path and
bytes, so it can be replayed with ``--replay`` and added to the corpus once fixed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
TARGETS = ("qga", "ovirt", "spice", "session", "config")
#: per-input time limit (s): generous for a loaded 2-core machine, tiny against a hang
INPUT_TIMEOUT_S = 25
#: a finding if one process grows past this (the decoders buffer at most a few MiB here)
RSS_LIMIT_MB = 1536


@dataclass
class Result:
    """What one target's run did, parsed from libFuzzer's output."""

    target: str
    returncode: int
    runs: int
    seconds: float
    edges: int
    features: int
    corpus_files: int
    log: str
    artifacts: list[Path]

    @property
    def exec_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        status = "ok" if self.returncode == 0 and not self.artifacts else "FINDING"
        return (
            f"{self.target:8} {status:7} {self.runs:>11,} inputs in {self.seconds:6.1f} s "
            f"({self.exec_per_s:8,.0f}/s)  cov {self.edges:5} edges  ft {self.features:6}  corpus {self.corpus_files}"
        )


def _child(target: str, fuzzer_args: list[str]) -> None:
    """Inside the fuzzing process: instrument our code (and tomllib), then hand over to libFuzzer."""
    import atheris

    logging.disable(logging.CRITICAL)  # the front-ends log every bad message: noise at 10k/s
    with atheris.instrument_imports(include=["concierge", "tomllib", "fuzz_"]):
        module = importlib.import_module(f"fuzz_{target}")
    atheris.Setup([sys.argv[0], *fuzzer_args], module.one_input)
    atheris.Fuzz()


def _last_int(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def run_target(target: str, *, seconds: float, runs: int, max_len: int, keep: Path | None, nice: int) -> Result:
    """Fuzz one target in a child process and summarise its run."""
    work = Path(tempfile.mkdtemp(prefix=f"concierge-fuzz-{target}-"))
    new = keep / target if keep else work / "new"
    new.mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / target
    args = [
        str(new),
        *([str(seeds)] if seeds.is_dir() else []),
        f"-max_len={max_len}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
    ]
    if seconds > 0:
        args.append(f"-max_total_time={max(1, int(seconds))}")
    if runs > 0:
        args.append(f"-runs={runs}")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--", *args]
    started = time.monotonic()
    with (keep / f"{target}.log" if keep else work / "log").open("w+") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, preexec_fn=lambda: os.nice(nice))
        log.seek(0)
        text = log.read()
    elapsed = time.monotonic() - started
    artifacts = [p for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))]
    result = Result(
        target=target,
        returncode=proc.returncode,
        runs=_last_int(r"stat::number_of_executed_units: (\d+)", text) or _last_int(r"Done (\d+) runs", text),
        seconds=elapsed,
        edges=_last_int(r"cov: (\d+)", text),
        features=_last_int(r"ft: (\d+)", text),
        corpus_files=_last_int(r"corp: (\d+)/", text),
        log=text,
        artifacts=artifacts,
    )
    if result.returncode == 0 and not artifacts:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _report_finding(result: Result) -> None:
    tail = "\n".join(result.log.splitlines()[-60:])
    print(f"--- {result.target}: libFuzzer exited {result.returncode}; last lines of its log:\n{tail}")
    for path in result.artifacts:
        data = path.read_bytes()
        print(f"--- input kept at {path} ({len(data)} bytes): {data[:512]!r}")
        print(f"    replay: .venv/bin/python tools/fuzz/run.py --replay {path} {result.target}")


def replay(target: str, paths: list[Path]) -> int:
    """Run files (or every file of directories) through a target in this process."""
    logging.disable(logging.CRITICAL)
    module = importlib.import_module(f"fuzz_{target}")
    count = 0
    for path in paths:
        for file in sorted(path.iterdir()) if path.is_dir() else [path]:
            module.one_input(file.read_bytes())
            count += 1
    print(f"{target}: {count} inputs replayed, no finding")
    return 0


def merge(target: str, sources: list[Path], max_len: int) -> int:
    """Minimise the committed corpus plus ``sources`` into the committed corpus (libFuzzer -merge)."""
    seeds = CORPUS / target
    fresh = Path(tempfile.mkdtemp(prefix=f"concierge-fuzz-merge-{target}-"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--", "-merge=1", f"-max_len={max_len}"]
    cmd += [str(fresh), *([str(seeds)] if seeds.is_dir() else []), *map(str, sources)]
    proc = subprocess.run(cmd, check=False)
    if proc.returncode == 0 and not any(fresh.iterdir()):
        # libFuzzer's merge re-executes argv[0] without our --child marker: keep the corpus
        print(f"{target}: merge produced nothing; corpus left unchanged (known limitation)")
        return 1
    if proc.returncode == 0:
        shutil.rmtree(seeds, ignore_errors=True)
        shutil.move(str(fresh), str(seeds))
        print(f"{target}: corpus now {len(list(seeds.iterdir()))} files")
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # --child TARGET -- libFuzzer flags (argparse would eat them)
        _child(argv[1], argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"targets to run (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--total", type=float, default=100.0, help="seconds for all targets together (default 100)")
    parser.add_argument("--runs", type=int, default=0, help="stop each target after this many inputs (0: by time)")
    parser.add_argument("--max-len", type=int, default=4096, help="largest input libFuzzer makes (default 4096)")
    parser.add_argument("--keep", type=Path, help="keep the new inputs in DIR/<target> instead of discarding them")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the fuzzing processes")
    parser.add_argument("--replay", type=Path, action="append", help="run this file/directory through the targets")
    parser.add_argument("--merge", type=Path, action="append", help="minimise this directory into the corpus")
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    if args.replay:
        return max(replay(t, args.replay) for t in targets)
    if args.merge:
        return max(merge(t, args.merge, args.max_len) for t in targets)
    seconds = 0.0 if args.runs and not argv_has_total(argv) else args.total / len(targets)
    failed = False
    for target in targets:
        result = run_target(
            target, seconds=seconds, runs=args.runs, max_len=args.max_len, keep=args.keep, nice=args.nice
        )
        print(result.line(), flush=True)
        if result.returncode != 0 or result.artifacts:
            failed = True
            _report_finding(result)
    return 1 if failed else 0


def argv_has_total(argv: list[str]) -> bool:
    """True when ``--total`` was given explicitly (with ``--runs``, both bounds then apply)."""
    return any(a == "--total" or a.startswith("--total=") for a in argv)


if __name__ == "__main__":
    sys.exit(main())
