"""``concierge doctor``: can this guest run Concierge, and what stands in its way?

Reports which host ports exist (and who holds them), which stock agents run or are active as
units (each one contends for a port), whether uinput, logind and a display are usable, and what
the configuration disables. Human table by default, ``--json`` for scripts. Exit status:
0 nothing wrong, 1 warnings (a facility is unusable), 4 failures (a conflict that stops an
actor from working, e.g. qemu-ga holding the QGA port; 4 is the CLI's "not healthy").
Must not import the runtime, ZeroMQ or any actor: it has to work when the agent does not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

from concierge.supervisor.doctor_checks import (
    FAIL,
    INFO,
    OK,
    SEVERITY,
    WARN,
    Finding,
    HostView,
    probe_displays,
    probe_logind,
    probe_policy,
    probe_ports,
    probe_stock_agents,
    probe_uinput,
)
from concierge.supervisor.doctor_migration import probe_qemu_ga

_COLOURS = {OK: "\x1b[32m", INFO: "\x1b[36m", WARN: "\x1b[33m", FAIL: "\x1b[31m"}
_RESET = "\x1b[0m"


def collect(view: HostView, config: Mapping[str, Any] | None) -> list[Finding]:
    """Run every probe in report order; a probe that crashes becomes a ``fail`` finding."""
    probes: list[tuple[str, Callable[[], Iterable[Finding]]]] = [
        ("ports", lambda: probe_ports(view)),
        ("stock-agents", lambda: probe_stock_agents(view)),
        ("devices", lambda: probe_uinput(view)),
        ("services", lambda: probe_logind(view)),
        ("services", lambda: probe_displays(view)),
        ("migration", lambda: probe_qemu_ga(view.root)),
    ]
    if config is not None:
        probes.append(("policy", lambda: probe_policy(config)))
    findings: list[Finding] = []
    for area, probe in probes:
        try:
            findings.extend(probe())
        except Exception as err:  # noqa: BLE001 - the doctor reports a broken probe, never dies
            detail = f"probe crashed: {type(err).__name__}: {err}"
            findings.append(Finding(area, "probe", FAIL, detail))
    return findings


EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 4


def _worst(findings: Iterable[Finding]) -> int:
    return max((SEVERITY[f.status] for f in findings), default=0)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 all fine, 1 at least one warning, 4 at least one failure."""
    return (EXIT_OK, EXIT_WARN, EXIT_FAIL)[_worst(findings)]


def render_json(findings: list[Finding]) -> str:
    """One JSON document: overall status plus every finding."""
    worst = _worst(findings)
    doc = {
        "status": {0: OK, 1: WARN, 2: FAIL}[worst],
        "findings": [
            {"area": f.area, "name": f.name, "status": f.status, "detail": f.detail, **dict(f.data)} for f in findings
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def _rows(findings: list[Finding], colour: bool) -> Iterator[str]:
    width_area = max((len(f.area) for f in findings), default=4)
    width_name = max((len(f.name) for f in findings), default=4)
    yield f"{'AREA':{width_area}}  {'CHECK':{width_name}}  {'STATUS':6}  DETAIL"
    for f in findings:
        status = f"{f.status:6}"
        if colour:
            status = f"{_COLOURS[f.status]}{status}{_RESET}"
        yield f"{f.area:{width_area}}  {f.name:{width_name}}  {status}  {f.detail}"


def render_table(findings: list[Finding], *, colour: bool = False) -> str:
    """A table for people; coloured status when writing to a terminal."""
    lines = list(_rows(findings, colour))
    worst = _worst(findings)
    summary = {
        0: "no problems found",
        1: "warnings: some features will be unavailable",
        2: "problems found: concierge cannot serve every port",
    }[worst]
    return "\n".join([*lines, "", summary]) + "\n"


def run_doctor(
    *,
    as_json: bool,
    config: Mapping[str, Any] | None = None,
    view: HostView | None = None,
    out: TextIO | None = None,
) -> int:
    """Probe the guest, print the report and return the exit status (0/1/4).

    ``config`` is the merged configuration mapping (for the policy section); ``view`` and
    ``out`` exist for tests and default to the real machine and stdout.
    """
    stream = out if out is not None else sys.stdout
    findings = collect(view or HostView(), config)
    if as_json:
        stream.write(render_json(findings) + "\n")
    else:
        stream.write(render_table(findings, colour=stream.isatty()))
    stream.flush()
    return exit_code(findings)
