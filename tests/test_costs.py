"""FLOPs, parameter counts and latency measurement."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from cascadekit import costs
from cascadekit.costs import count_flops, count_params, measure_latency
from cascadekit.errors import (
    EmptyInputError,
    InputShapeError,
    MissingDependencyError,
    ParameterError,
)

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------------ FLOPs


def test_linear_flops_are_two_per_multiply_add() -> None:
    layer = torch.nn.Linear(784, 10)
    assert count_flops(layer, torch.zeros(1, 784)) == 2 * 784 * 10
    # per input: a batch of 7 gives the same number
    assert count_flops(layer, torch.zeros(7, 784)) == 2 * 784 * 10
    # numpy input is accepted
    assert count_flops(layer, np.zeros((2, 784), dtype=np.float32)) == 2 * 784 * 10


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "side", "pad"), [(1, 8, 3, 28, 1), (3, 4, 5, 12, 0)]
)
def test_conv_flops_match_formula(c_in: int, c_out: int, k: int, side: int, pad: int) -> None:
    conv = torch.nn.Conv2d(c_in, c_out, k, padding=pad)
    out_side = side + 2 * pad - k + 1
    expected = 2 * out_side * out_side * c_out * c_in * k * k  # brute-force multiply-add count
    assert count_flops(conv, torch.zeros(2, c_in, side, side)) == expected


def test_mlp_flops_sum_of_layers() -> None:
    mlp = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    assert count_flops(mlp, torch.zeros(1, 28, 28)) == 2 * (784 * 128 + 128 * 10)


def test_count_flops_errors() -> None:
    layer = torch.nn.Linear(4, 2)
    with pytest.raises(ParameterError, match=r"torch\.nn\.Module"):
        count_flops(lambda x: x, torch.zeros(1, 4))  # type: ignore[arg-type]
    with pytest.raises(InputShapeError, match="batch axis"):
        count_flops(layer, torch.tensor(1.0))
    with pytest.raises(EmptyInputError, match="at least one input"):
        count_flops(layer, torch.zeros(0, 4))


def test_count_params() -> None:
    layer = torch.nn.Linear(784, 10)
    assert count_params(layer) == 784 * 10 + 10
    bn = torch.nn.BatchNorm1d(5)  # running statistics are buffers, not parameters
    assert count_params(bn) == 10
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 3
    assert count_params(model) == 11
    with pytest.raises(ParameterError, match=r"torch\.nn\.Module"):
        count_params("model")  # type: ignore[arg-type]


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "cascadekit\[torch\]"'):
        count_flops(object(), None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ latency


class _FakeClock:
    """perf_counter replacement: each fn call takes the next duration of a schedule."""

    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = durations
        self.calls: list[Any] = []

    def perf_counter(self) -> float:
        return self.now

    def fn(self, batch: Any) -> None:
        self.now += self.durations[len(self.calls)]
        self.calls.append(batch)


def test_latency_is_median_per_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 warmup calls (slow, ignored), then 5 timed calls: median 0.4 s for a batch of 4
    clock = _FakeClock([9.0, 9.0, 0.1, 0.4, 5.0, 0.4, 0.6])
    monkeypatch.setattr(costs.time, "perf_counter", clock.perf_counter)
    inputs = np.arange(10)
    got = measure_latency(clock.fn, inputs, batch_size=4, repeats=5, warmup=2)
    assert got == pytest.approx(0.4 / 4)
    assert len(clock.calls) == 7
    # every call gets a full batch, cycling through the inputs
    assert all(len(b) == 4 for b in clock.calls)
    assert [int(b[0]) for b in clock.calls] == [0, 4, 0, 4, 0, 4, 0]


def test_latency_real_timing_scales_with_work() -> None:
    x = np.random.default_rng(0).standard_normal((512, 256))
    cheap = measure_latency(lambda b: b.sum(), x, batch_size=256, repeats=5, warmup=1)
    dear = measure_latency(lambda b: b @ x.T @ x, x, batch_size=256, repeats=5, warmup=1)
    assert 0 < cheap < dear


def test_latency_with_torch_module() -> None:
    model = torch.nn.Linear(784, 10)

    def run(b: Any) -> Any:
        with torch.inference_mode():
            return model(b)

    x = torch.zeros(300, 784)
    one = measure_latency(run, x, batch_size=1, repeats=20)
    big = measure_latency(run, x, batch_size=256, repeats=5)
    # no ordering asserted: on a shared machine a single timing can be off by 10x
    assert 0 < one < 1.0 and 0 < big < 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ParameterError, "batch_size to be a positive integer"),
        ({"batch_size": -3}, ParameterError, "batch_size to be a positive integer"),
        ({"batch_size": 1.5}, ParameterError, "batch_size to be a positive integer"),
        ({"batch_size": True}, ParameterError, "batch_size to be a positive integer"),
        ({"batch_size": 11}, ParameterError, r"batch_size <= the number of inputs \(10\)"),
        ({"batch_size": 1, "repeats": 0}, ParameterError, "repeats to be an integer >= 1"),
        ({"batch_size": 1, "warmup": -1}, ParameterError, "warmup to be an integer >= 0"),
        ({"batch_size": 1, "inputs": []}, EmptyInputError, "at least one input"),
        ({"batch_size": 1, "inputs": iter([1, 2])}, InputShapeError, "length and slicing"),
        ({"batch_size": 1, "fn": 3}, ParameterError, "fn to be callable"),
    ],
)
def test_latency_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"fn": len, "inputs": list(range(10))}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        measure_latency(args.pop("fn"), args.pop("inputs"), **args)


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_first_torch_import_defaults_omp_wait_policy(preset: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os; from cascadekit.costs import import_torch; import_torch(); "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == expected
