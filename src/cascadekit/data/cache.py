"""A small on-disk cache for trained models, logits and measured costs.

Entries live under ``$CASCADEKIT_CACHE_DIR`` (or ``~/.cache/cascadekit``), one folder per
recipe, named by :func:`recipe_hash`: a SHA-256 of the recipe's canonical JSON. Change anything
in a recipe (an architecture, a hyperparameter, a split size, the seed, the code version) and
the key changes, so a stale entry is never read. Every file is written to a temporary file in
the same folder and moved into place with :func:`os.replace`, so a reader sees either the old
file or the complete new one, never half a file.

Examples
--------
>>> from cascadekit.data.cache import recipe_hash
>>> recipe_hash({"seed": 0, "model": "mlp"}) == recipe_hash({"model": "mlp", "seed": 0})
True
>>> len(recipe_hash({"seed": 0}))
16
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = [
    "CACHE_ENV",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "cache_root",
    "read_json",
    "recipe_hash",
    "state_dict_bytes",
]

CACHE_ENV = "CASCADEKIT_CACHE_DIR"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache folder: ``cache_dir``, else ``$CASCADEKIT_CACHE_DIR``, else
    ``~/.cache/cascadekit``. The folder is created on first write, not here.

    Examples
    --------
    >>> str(cache_root("/tmp/ck-cache"))
    '/tmp/ck-cache'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cascadekit"


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return repr(float(obj))  # exact round-trip text, independent of json's float formatting
    raise ParameterError(
        f"Expected a recipe made of dicts, lists, strings, numbers, booleans and None; got "
        f"{type(obj).__name__} ({obj!r}). Describe the recipe with plain values."
    )


def recipe_hash(recipe: Mapping[str, Any], length: int = 16) -> str:
    """Return a stable hex key for a recipe (key order does not matter).

    Parameters
    ----------
    recipe : mapping
        Plain values only: dicts, lists, tuples, strings, numbers, booleans, None.
    length : int
        Number of hex characters kept from the SHA-256 (1..64).

    Examples
    --------
    >>> recipe_hash({"lr": 0.001}) != recipe_hash({"lr": 0.0010001})
    True
    """
    if not 1 <= int(length) <= 64:
        raise ParameterError(f"Expected length in [1, 64] hex characters; got {length!r}.")
    text = json.dumps(_canonical(recipe), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[: int(length)]


def state_dict_bytes(torch: Any, module: Any) -> bytes:
    """A torch module's ``state_dict`` serialised by ``torch.save``, as bytes to write atomically.

    ``torch`` is the imported module (passed in so that this module never imports it).

    Examples
    --------
    >>> import torch
    >>> data = state_dict_bytes(torch, torch.nn.Linear(2, 1))
    >>> sorted(torch.load(io.BytesIO(data), weights_only=True))
    ['bias', 'weight']
    """
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getvalue()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + os.replace).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = atomic_write_bytes(pathlib.Path(tempfile.mkdtemp()) / "a" / "x.bin", b"hi")
    >>> p.read_bytes()
    b'hi'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write arrays to an uncompressed ``.npz`` file, atomically.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> p = atomic_write_npz(pathlib.Path(tempfile.mkdtemp()) / "a.npz", {"x": np.arange(3)})
    >>> np.load(p)["x"].tolist()
    [0, 1, 2]
    """
    buf = io.BytesIO()
    named: dict[str, Any] = {str(k): np.asarray(v) for k, v in arrays.items()}
    np.savez(buf, **named)
    return atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
