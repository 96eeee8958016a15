"""Optional dependencies: one helper imports them or names the pip command."""

from __future__ import annotations

import json

import pytest

from cascadekit._optional import require
from cascadekit.errors import MissingDependencyError


def test_require_returns_the_module() -> None:
    assert require("json", "core", "This test") is json


def test_a_missing_module_names_the_extra_to_install() -> None:
    with pytest.raises(
        MissingDependencyError,
        match=r'Plotting needs not_installed_pkg: pip install "cascadekit\[plot\]"',
    ):
        require("not_installed_pkg.sub", "plot", "Plotting")
