"""Every Python block of the README and of the documentation site runs as written.

A block runs in CI unless an HTML comment on the line before its fence puts it in a tier:
``<!-- docs-test: zoo -->`` (needs the full Fashion-MNIST zoo, which the first ``cascadekit demo``
trains in minutes), ``server`` (needs ``cascadekit serve --demo --port 8000 --grpc-port 8001``
running), ``text``
(needs ``bash scripts/setup.sh --text``) or ``fragment`` (an illustration whose names stand for the
reader's own data; never run). Set ``CASCADEKIT_DOCS_TIERS=zoo,server`` (or ``all``) to run tiers.
Blocks of one page share one namespace, in order, per tier, and run in a scratch folder. The run
ends with a line counting the blocks executed and skipped, and why (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- docs-test: (?P<tier>[a-z]+) -->\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)```", re.S
)
TIERS = {
    "ci": "",
    "zoo": "need the full Fashion-MNIST zoo (the first `cascadekit demo` trains it)",
    "server": "need `cascadekit serve --demo --port 8000 --grpc-port 8001` running",
    "text": "need the text encoders (`bash scripts/setup.sh --text`)",
    "fragment": "are illustrations over the reader's own data (never run)",
}


def python_blocks(text: str) -> list[tuple[str, str]]:
    """``(tier, code)`` of every Python block of a Markdown page, in order."""
    out = []
    for m in BLOCK.finditer(text):
        if m["lang"] in ("python", "py"):
            out.append((m["tier"] or "ci", m["code"]))
    return out


def enabled_tiers() -> set[str]:
    raw = os.environ.get("CASCADEKIT_DOCS_TIERS", "")
    names = {t.strip() for t in raw.split(",") if t.strip()}
    return set(TIERS) - {"fragment"} if "all" in names else names | {"ci"}


def cases() -> list[pytest.param]:
    params = []
    for page in PAGES:
        blocks = python_blocks(page.read_text())
        for tier in TIERS:
            code = [c for t, c in blocks if t == tier]
            if code:
                rel = page.relative_to(ROOT).as_posix()
                params.append(pytest.param(rel, tier, code, id=f"{rel}-{tier}"))
    return params


def test_tiers_are_known() -> None:
    for page in PAGES:
        for tier, _ in python_blocks(page.read_text()):
            assert tier in TIERS, f"{page}: unknown tier {tier!r}; use one of {list(TIERS)}"


def test_parser_reads_tiers_and_languages() -> None:
    text = (
        "x\n```python\na = 1\n```\n<!-- docs-test: zoo -->\n```python\nb = 2\n```\n"
        "```bash\nls\n```\n"
    )
    assert python_blocks(text) == [("ci", "a = 1\n"), ("zoo", "b = 2\n")]


@pytest.mark.parametrize(("page", "tier", "code"), cases())
def test_doc_blocks_run(
    page: str,
    tier: str,
    code: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: object,
) -> None:
    record_property("docs_blocks", len(code))  # type: ignore[operator]
    record_property("docs_tier", tier)  # type: ignore[operator]
    if tier not in enabled_tiers():
        pytest.skip(f"{page}: {len(code)} block(s) {TIERS[tier]}")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs"}
    for i, block in enumerate(code):
        exec(compile(block, f"{page} ({tier} block {i + 1})", "exec"), namespace)
