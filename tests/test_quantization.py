"""Int8 quantization on PyTorch's PT2E path, on a real model trained on real data (digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from cascadekit.costs import count_flops, count_macs, serialized_size
from cascadekit.errors import EmptyInputError, InputShapeError, ParameterError
from cascadekit.quantization import Int8Model, quantize_int8


@pytest.fixture(scope="module")
def digits_net() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """A 64-256-10 MLP trained for a few hundred steps on scikit-learn's digits."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(300):
        idx = torch.randint(0, 1200, (64,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    return net.eval(), x, y


def test_int8_model_keeps_accuracy_and_shrinks(digits_net) -> None:
    net, x, y = digits_net
    q = quantize_int8(net, x[1200:1500], compile=False)
    assert isinstance(q, Int8Model) and q.compiled is None and q.compile_error is None
    test_x, test_y = x[1500:], y[1500:]
    with torch.no_grad():
        fp = net(torch.from_numpy(test_x)).numpy()
    qi = q.logits(test_x, batch_size=50)
    assert qi.shape == fp.shape and qi.dtype == np.float32
    # int8 rounding moves logits a little, predictions almost never
    assert np.mean(qi.argmax(1) == fp.argmax(1)) >= 0.97
    assert abs(np.mean(qi.argmax(1) == test_y) - np.mean(fp.argmax(1) == test_y)) <= 0.03
    assert np.max(np.abs(qi - fp)) < 0.2 * np.max(np.abs(fp))
    # int8 weights: about a quarter of the float bytes (plus scales and file overhead)
    assert serialized_size(q.graph) < 0.4 * serialized_size(net)


def test_int8_model_runs_any_batch_size(digits_net) -> None:
    net, x, _ = digits_net
    q = quantize_int8(net, x[:256], compile=False)
    for b in (1, 3, 700):
        assert tuple(q(x[:b]).shape) == (b, 10)


def test_count_macs_is_half_the_flops(digits_net) -> None:
    net, x, _ = digits_net
    one = torch.from_numpy(x[:1])
    assert count_macs(net, one) == 64 * 256 + 256 * 10
    assert 2 * count_macs(net, one) == count_flops(net, one)
    assert count_macs(net, torch.from_numpy(x[:7])) == count_macs(net, one)


def test_count_macs_conv_matches_formula() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, groups=1)
    assert count_macs(conv, torch.zeros(2, 3, 10, 10)) == 8 * 10 * 10 * 3 * 9
    grouped = torch.nn.Conv2d(4, 8, 3, groups=2)
    assert count_macs(grouped, torch.zeros(1, 4, 5, 5)) == 8 * 3 * 3 * 2 * 9


@pytest.mark.parametrize(
    ("calib", "kwargs", "error", "match"),
    [
        (np.zeros((0, 64), np.float32), {}, EmptyInputError, r"Expected calibration inputs"),
        (np.float32(1.0), {}, InputShapeError, r"first \(batch\) axis; got a 0-d"),
        (np.zeros((8, 64), np.float32), {"batch_size": 0}, ParameterError, r"batch_size"),
    ],
)
def test_quantize_bad_input(digits_net, calib, kwargs, error, match) -> None:
    net, _, _ = digits_net
    with pytest.raises(error, match=match):
        quantize_int8(net, calib, compile=False, **kwargs)


def test_quantize_needs_a_module() -> None:
    with pytest.raises(ParameterError, match=r"Expected a torch.nn.Module; got function"):
        quantize_int8(lambda x: x, np.zeros((4, 2), np.float32))


def test_cost_helpers_bad_input() -> None:
    with pytest.raises(ParameterError, match=r"Expected a torch.nn.Module; got str"):
        count_macs("net", torch.zeros(1, 2))  # type: ignore[arg-type]
    with pytest.raises(InputShapeError, match=r"at least one input; got shape \(0, 2\)"):
        count_macs(torch.nn.Linear(2, 2), torch.zeros(0, 2))
