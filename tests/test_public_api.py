"""The public surface: `__all__` is exactly what the package exports, the core imports no heavy
extra (the README's and the site's Python blocks run in tests/test_docs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cascadekit

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_exactly_the_public_api() -> None:
    import types

    exported = set(cascadekit.__all__)
    assert len(exported) == len(cascadekit.__all__)
    for name in exported:
        assert hasattr(cascadekit, name), name
    # every public, non-module attribute is exported; modules are exported on purpose only
    public = {
        n
        for n, v in vars(cascadekit).items()
        if not n.startswith("_") and n != "annotations" and not isinstance(v, types.ModuleType)
    }
    assert public <= exported, public - exported


def test_core_imports_no_heavy_extra() -> None:
    code = (
        "import sys, cascadekit, cascadekit.curves, cascadekit.calibration, cascadekit.stats, "
        "cascadekit.router, cascadekit.io;"
        "heavy = {'torch', 'onnxruntime', 'sklearn', 'matplotlib', 'fastapi', 'ray', "
        "'transformers', 'typer', 'rich'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
