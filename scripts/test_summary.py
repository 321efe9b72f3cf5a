"""Print passed / failed / skipped per tox environment and in total.

``make test`` runs it after tox, on the JUnit files the pytest environments
wrote to ``.tox/junit`` (and the list of environments it expected there).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) in one JUnit file."""
    root = ET.parse(report).getroot()  # noqa: S314 - our own pytest's output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    passed = failed = skipped = 0
    for suite in suites:
        tests, failures, errors, skips = (
            int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")
        )
        passed += tests - failures - errors - skips
        failed += failures + errors
        skipped += skips
    return passed, failed, skipped


def main(junit: str = ".tox/junit") -> int:
    folder = Path(junit)
    expected_file = folder / "expected-envs"
    expected = expected_file.read_text().split() if expected_file.is_file() else []
    totals = [0, 0, 0]
    print(f"{'environment':<18} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for env in expected:
        report = folder / f"{env}.xml"
        if not report.is_file():
            print(f"{env:<18} {'no report (did not run, or crashed)':>24}")
            continue
        row = counts(report)
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        print(f"{env:<18} {row[0]:>7} {row[1]:>7} {row[2]:>8}")
    print(f"{'total':<18} {totals[0]:>7} {totals[1]:>7} {totals[2]:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
