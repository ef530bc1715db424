#!/usr/bin/env python3
"""make bench-peers: Vigil side by side with the peers users would pick instead.

SLO rules: the same SLOs (default 1000) given to `vigil render` and to `sloth generate`
(Sloth v0.16.0, built by `PEERS=1 e2e/tools/install.sh`), each run as a whole process
RUNS times (default 7), alternating. Printed: the median and the fastest wall time, the
median peak RSS, and the rules each wrote, as one JSON document (docs/performance.md).

    SLOS=1000 RUNS=7 scripts/bench-peers.py

Both get the same work: one ratio SLI per SLO (errors over total of a counter), a 30-day
window, the objectives 99, 99.5, 99.9 and 99.95, 50 services. Sloth gets its documented
prometheus/v1 spec (one file, one document per service) with page and ticket alerts;
Vigil gets ServiceLevelObjective manifests (one file), which it checks against the CRD
schema and its CEL rules before rendering.
"""

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VIGIL = Path(os.environ.get("VIGIL_BIN", REPO / "target/release/vigil"))
SLOTH = Path(os.environ.get("SLOTH_BIN", REPO / ".tools/bin/sloth"))
SLOS = int(os.environ.get("SLOS", "1000"))
RUNS = int(os.environ.get("RUNS", "7"))
SERVICES = 50
OBJECTIVES = [99.0, 99.5, 99.9, 99.95]


def selectors(i):
    route = f'route="r{i % 10}"'
    return (
        f'http_requests_total{{job="bench",code="500",{route}}}',
        f'http_requests_total{{job="bench",{route}}}',
    )


def vigil_manifests():
    docs = []
    for i in range(SLOS):
        errors, total = selectors(i)
        docs.append(
            json.dumps(
                {
                    "apiVersion": "vigil.io/v1alpha1",
                    "kind": "ServiceLevelObjective",
                    "metadata": {"name": f"slo-{i:05}", "namespace": "bench"},
                    "spec": {
                        "service": f"svc-{i % SERVICES}",
                        "objective": OBJECTIVES[i % 4],
                        "window": "30d",
                        "sli": {"ratio": {"errors": errors, "total": total}},
                        "output": {"kind": "ConfigMap"},
                    },
                }
            )
        )
    return "\n---\n".join(docs) + "\n"


def sloth_specs():
    # YAML written out: Sloth recognises its spec types by their `version:` line.
    docs = []
    for service in range(SERVICES):
        lines = ['version: "prometheus/v1"', f'service: "svc-{service}"', "slos:"]
        for i in range(service, SLOS, SERVICES):
            errors, total = selectors(i)
            lines += [
                f'  - name: "slo-{i:05}"',
                f"    objective: {OBJECTIVES[i % 4]}",
                "    sli:",
                "      events:",
                f"        error_query: 'sum(rate({errors}[{{{{.window}}}}]))'",
                f"        total_query: 'sum(rate({total}[{{{{.window}}}}]))'",
                "    alerting:",
                f'      name: "Slo{i:05}HighErrorRate"',
                "      page_alert:",
                "        labels: {severity: page}",
                "      ticket_alert:",
                "        labels: {severity: ticket}",
            ]
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


def run(argv):
    """Runs argv to completion; returns (seconds, peak RSS in KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss


def rules_in(path):
    """Recording and alerting rules in the rule files under path."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    records = alerts = 0
    for file in files:
        for line in file.read_text().splitlines():
            stripped = line.strip().lstrip("- ")
            records += stripped.startswith("record:")
            alerts += stripped.startswith("alert:")
    return {"recording": records, "alerting": alerts}


def main():
    for binary, how in [(VIGIL, "make bench-peers builds it"), (SLOTH, "PEERS=1 e2e/tools/install.sh")]:
        if not binary.is_file():
            sys.exit(f"{binary} is missing: {how}")
    # On tmpfs when there is one: Vigil writes a file per SLO and Sloth one file, and on
    # ext4 creating a thousand files again where they were just deleted cost more than the
    # rendering itself. The figures are the programs', not the file system's.
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="vigil-bench-peers-", dir=base) as tmp:
        tmp = Path(tmp)
        (tmp / "vigil.yaml").write_text(vigil_manifests())
        (tmp / "sloth.yaml").write_text(sloth_specs())
        commands = {
            "vigil": lambda out: [str(VIGIL), "render", "-f", str(tmp / "vigil.yaml"), "-o", str(out)],
            "sloth": lambda out: [str(SLOTH), "generate", "-i", str(tmp / "sloth.yaml"), "-o", str(out)],
        }
        outputs = {"vigil": tmp / "vigil-out", "sloth": tmp / "sloth-out.yaml"}
        samples = {name: [] for name in commands}
        # One warm-up each (page cache), then alternating runs.
        for round_ in range(RUNS + 1):
            for name, command in commands.items():
                out = outputs[name]
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
                seconds, rss = run(command(out))
                if round_ > 0:
                    samples[name].append((seconds, rss))
        figures = {}
        for name, runs in samples.items():
            times = [s for s, _ in runs]
            figures[name] = {
                "median_ms": round(statistics.median(times) * 1000, 1),
                "fastest_ms": round(min(times) * 1000, 1),
                "peak_rss_mib": round(statistics.median(r for _, r in runs) / 1024, 1),
                "rules": rules_in(outputs[name]),
            }
        report = {
            "machine": {"cpus": os.cpu_count(), "system": platform.platform()},
            "slos": SLOS,
            "runs": RUNS,
            "output_on": base or tempfile.gettempdir(),
            "sloth_version": subprocess.run(
                [str(SLOTH), "version"], capture_output=True, text=True
            ).stdout.strip(),
            "render": figures,
            "vigil_speedup": round(figures["sloth"]["median_ms"] / figures["vigil"]["median_ms"], 2),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
