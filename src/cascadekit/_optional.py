"""Optional dependencies: import one or say how to install it.

The core of cascadekit needs numpy, scipy, typer and rich only. Everything heavier (torch,
onnxruntime, scikit-learn, the server's stack, Ray, matplotlib, pyarrow) is an extra, imported
where it is used through :func:`require`, which turns a missing package into a
:class:`~cascadekit.errors.MissingDependencyError` naming the ``pip install`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip command.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"sklearn.linear_model"``.
    extra : str
        The cascadekit extra that installs it (``pip install "cascadekit[extra]"``).
    what : str
        What needs it, for the message (e.g. ``"TorchModel"``).

    Returns
    -------
    module
        The imported module.

    Examples
    --------
    >>> require("json", "core", "This example").dumps([1])
    '[1]'
    >>> require("no_such_module_here", "plot", "Plots")
    Traceback (most recent call last):
    ...
    cascadekit.errors.MissingDependencyError: Plots needs no_such_module_here: pip install ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f'{what} needs {module.split(".")[0]}: pip install "cascadekit[{extra}]".'
        ) from exc
