"""Early exit inside one frozen network: small linear heads on intermediate activations.

:func:`fit_exit_heads` captures the activations of named layers of an already-trained torch
network with forward hooks (its weights are never changed: no gradient reaches them and the
training flag is restored), average-pools them to ``(C, pool, pool)`` and trains one linear
softmax head per layer. :meth:`ExitHeads.exit_logits` gives every exit's logits plus the
network's own; :meth:`ExitHeads.graph` the chain of exits with their FLOPs, ready for a
:class:`~cascadekit.policies.LearnedPolicy` to decide where each input leaves. Heads are
cached under :func:`cascadekit.data.cache.cache_root` by the hash of their recipe (which
includes a fingerprint of the frozen network's weights), as ``.npz`` arrays, not pickles.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validation import as_labels
from ..data.cache import atomic_write_npz, cache_root, recipe_hash
from ..errors import ParameterError
from ._graph import PolicyGraph
from .features import hidden_features

__all__ = ["ExitHeads", "fit_exit_heads", "prefix_flops", "weights_fingerprint"]

Float64Array = NDArray[np.float64]
_CODE_VERSION = "exit-heads/1"


def weights_fingerprint(module: Any) -> str:
    """SHA-256 (16 hex) of a torch module's ``state_dict`` (names, shapes and values).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> a = torch.nn.Linear(2, 2)
    >>> weights_fingerprint(a) == weights_fingerprint(a)
    True
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        arr = t.detach().cpu().contiguous().numpy()
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def prefix_flops(
    module: Any, example_input: Any, layers: Sequence[str]
) -> tuple[list[float], float]:
    """FLOPs per input spent when each named layer's output is ready, and for the whole pass.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` in one forward pass on
    ``example_input`` (any batch size; the counts are divided by it). Layers must run in the
    order given.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..costs import import_torch

    torch = import_torch()
    mods = dict(module.named_modules())
    x = (
        example_input
        if isinstance(example_input, torch.Tensor)
        else torch.as_tensor(np.asarray(example_input))
    )
    n = int(x.shape[0])
    seen: dict[str, float] = {}
    counter = FlopCounterMode(display=False)

    def make_hook(nm: str) -> Any:
        def hook(_m: Any, _i: Any, _o: Any) -> None:
            seen.setdefault(nm, float(counter.get_total_flops()))

        return hook

    handles = [mods[nm].register_forward_hook(make_hook(nm)) for nm in layers]
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), counter:
            module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    total = float(counter.get_total_flops()) / n
    return [seen[nm] / n for nm in layers], total


@dataclass
class ExitHeads:
    """Linear exit heads on intermediate layers of a frozen network.

    Attributes
    ----------
    layers : tuple of str
        Where the heads read (names in ``module.named_modules()``), in execution order.
    pool : int
        Activations are average-pooled to ``(C, pool, pool)`` before the head.
    weights, biases : list of ndarray
        Head ``j`` computes ``features @ weights[j].T + biases[j]``.
    prefix_flops : list of float
        FLOPs per input of the network up to each layer.
    head_flops : list of float
        FLOPs per input of each head (``2 * d * n_classes``).
    network_flops : float
        FLOPs per input of the whole network (the reference cost).
    key : str
        Recipe hash (the cache file name).
    """

    layers: tuple[str, ...]
    pool: int
    weights: list[Float64Array]
    biases: list[Float64Array]
    prefix_flops: list[float]
    head_flops: list[float]
    network_flops: float
    key: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_exits(self) -> int:
        """Number of heads (the network's own output is one more node)."""
        return len(self.layers)

    def exit_logits(self, module: Any, inputs: Any, batch_size: int = 2000) -> list[Float64Array]:
        """Logits of every head and, last, of the network itself, in one pass per batch."""
        chunks: list[Float64Array] = []
        feats = hidden_features(
            module,
            inputs,
            list(self.layers),
            pool=self.pool,
            batch_size=batch_size,
            outputs=chunks,
        )
        outs = [f @ w.T + b for f, w, b in zip(feats, self.weights, self.biases, strict=True)]
        return [*outs, np.vstack(chunks)]

    def graph(self, names: Sequence[str] | None = None) -> PolicyGraph:
        """The chain exit_1 -> ... -> exit_m -> network, with incremental FLOPs per node.

        Node ``j`` costs the network's layers since the previous exit plus head ``j``; the
        last node costs the rest of the network. The reference cost is the whole network, so
        relative costs below 1 are savings against running it alone.
        """
        costs = []
        prev = 0.0
        for p, h in zip(self.prefix_flops, self.head_flops, strict=True):
            costs.append(p - prev + h)
            prev = p
        costs.append(self.network_flops - prev)
        nm = (
            list(names)
            if names is not None
            else [*(f"exit{j + 1}" for j in range(self.n_exits)), "final"]
        )
        return PolicyGraph.chain(costs, nm, reference_cost=self.network_flops)

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Arrays for an ``.npz`` file (no pickle)."""
        out: dict[str, NDArray[Any]] = {
            "meta": np.array(
                json.dumps(
                    {
                        "layers": list(self.layers),
                        "pool": self.pool,
                        "prefix_flops": self.prefix_flops,
                        "head_flops": self.head_flops,
                        "network_flops": self.network_flops,
                        "key": self.key,
                        "info": self.info,
                    }
                )
            )
        }
        for j, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"w{j}"], out[f"b{j}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> ExitHeads:
        """Inverse of :meth:`to_arrays`."""
        meta = json.loads(str(arrays["meta"]))
        m = len(meta["layers"])
        return cls(
            layers=tuple(meta["layers"]),
            pool=int(meta["pool"]),
            weights=[np.asarray(arrays[f"w{j}"], dtype=np.float64) for j in range(m)],
            biases=[np.asarray(arrays[f"b{j}"], dtype=np.float64) for j in range(m)],
            prefix_flops=[float(v) for v in meta["prefix_flops"]],
            head_flops=[float(v) for v in meta["head_flops"]],
            network_flops=float(meta["network_flops"]),
            key=str(meta["key"]),
            info=dict(meta.get("info") or {}),
        )


def _train_head(
    torch: Any, X: Float64Array, y: NDArray[Any], n_classes: int, epochs: int, random_state: int
) -> tuple[Float64Array, Float64Array, float]:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features."""
    gen = torch.Generator().manual_seed(random_state)
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    xt = torch.as_tensor((X - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor(y)
    lin = torch.nn.Linear(X.shape[1], n_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.01)
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=int(epochs), history_size=20)

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + 1e-4 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w = lin.weight.detach().double().numpy() / std[None, :]
    b = lin.bias.detach().double().numpy() - w @ mean
    acc = float(np.mean(((X @ w.T + b).argmax(axis=1)) == y))
    return w, b, acc


def fit_exit_heads(
    module: Any,
    layers: Sequence[str],
    inputs: Any,
    labels: ArrayLike,
    *,
    pool: int = 2,
    max_iter: int = 200,
    random_state: int = 0,
    n_classes: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    recipe: Mapping[str, Any] | None = None,
) -> ExitHeads:
    """Train linear exit heads on the frozen ``module``'s activations at ``layers``.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; it is only run forward (``eval`` mode, inference mode).
    layers : sequence of str
        Where to attach heads, in execution order.
    inputs, labels : training data of the heads (e.g. the split the network was trained on).
    pool : int, default=2
        Adaptive average pooling of 4-D activations to ``(C, pool, pool)``.
    max_iter : int, default=200
        L-BFGS iterations per head.
    cache : bool, default=True
        Load / save the heads under ``cache_root(cache_dir) / "exit_heads" / <hash>.npz``; the
        hash covers the layers, pooling, training settings, the network's weights fingerprint,
        the data's shape and a hash of the labels, and ``recipe`` (e.g. the data split name).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x = torch.randn(60, 4); y = net(x).argmax(1).numpy()
    >>> heads = fit_exit_heads(net, ["1"], x, y, cache=False)
    >>> [z.shape for z in heads.exit_logits(net, x)]
    [(60, 3), (60, 3)]
    >>> heads.graph().n_nodes
    2
    """
    from ..costs import import_torch

    torch = import_torch()
    names = list(layers)
    if not names:
        raise ParameterError("Expected at least one layer to attach an exit head to.")
    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    y = as_labels(labels, n_samples=int(x.shape[0]))
    c = int(n_classes) if n_classes is not None else int(y.max()) + 1
    full = {
        "code": _CODE_VERSION,
        "layers": names,
        "pool": int(pool),
        "max_iter": int(max_iter),
        "seed": int(random_state),
        "n_classes": c,
        "weights": weights_fingerprint(module),
        "n": int(x.shape[0]),
        "labels": hashlib.sha256(y.tobytes()).hexdigest()[:16],
        "extra": dict(recipe or {}),
    }
    key = recipe_hash(full)
    path = cache_root(cache_dir) / "exit_heads" / f"{key}.npz"
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return ExitHeads.from_arrays({k: z[k] for k in z.files})
        except (OSError, ValueError, KeyError):
            pass  # unreadable: retrain
    feats = hidden_features(module, x, names, pool=pool)
    pre, total = prefix_flops(module, x[:1], names)
    ws, bs, accs = [], [], []
    for j, f in enumerate(feats):
        w, b, acc = _train_head(torch, f, y, c, max_iter, random_state + j)
        ws.append(w)
        bs.append(b)
        accs.append(acc)
    heads = ExitHeads(
        layers=tuple(names),
        pool=int(pool),
        weights=ws,
        biases=bs,
        prefix_flops=pre,
        head_flops=[2.0 * w.size for w in ws],
        network_flops=total,
        key=key,
        info={"train_accuracy": accs, "recipe": full},
    )
    if cache:
        atomic_write_npz(path, heads.to_arrays())
    return heads
