"""Shared test setup: torch's OpenMP threads wait passively (see cascadekit.cli.main)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Count the documentation's Python blocks that ran and those skipped, with the reason."""
    executed, skipped = 0, {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", ()))
            if "docs_blocks" not in props or getattr(report, "when", "") != "call":
                continue
            if report.skipped:
                reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
                reason = reason.split(" block(s) ", 1)[-1]
                skipped[reason] = skipped.get(reason, 0) + int(props["docs_blocks"])
            else:
                executed += int(props["docs_blocks"])
    if executed or skipped:
        why = "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        terminalreporter.write_line(
            f"documentation Python blocks: {executed} executed, {sum(skipped.values())} skipped"
            + (f" ({why})" if why else "")
        )
