"""The Fashion-MNIST zoo: trained once (reduced recipe) into a temporary cache, then reloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cascadekit.data import (
    CACHE_ENV,
    DEFAULT_FASHION_MNIST_DIR,
    MODEL_NAMES,
    SPLITS,
    FashionMnistZoo,
    ModelRecipe,
    ZooRecipe,
    default_recipe,
    load_fashion_mnist,
    load_fashion_mnist_zoo,
    recipe_hash,
)
from cascadekit.data import zoo as zoo_module
from cascadekit.data.kernels import KERNELS_ID, kernels_pinned, run_pinned
from cascadekit.errors import CascadeError, DataNotFoundError, ParameterError, UnknownNameError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs `sudo apt-get install -y dataset-fashion-mnist`",
)

TINY_SIZES = {"train": 600, "select": 100, "calibrate": 100, "test": 200}


def tiny_recipe(random_state: int = 0, epochs: int = 1) -> ZooRecipe:
    """One small MLP on small splits: trains in well under a second."""
    return ZooRecipe(
        models=(ModelRecipe("student", "mlp", {"hidden": [16]}, epochs=epochs, batch_size=64),),
        sizes=TINY_SIZES,
        random_state=random_state,
        threads=1,
        latency_batches=(1, 8),
        latency_repeats=3,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[FashionMnistZoo, list[Any], Path]:
    cache = tmp_path_factory.mktemp("zoo-cache")
    events: list[tuple[str, float]] = []
    zoo = load_fashion_mnist_zoo(
        reduced=True, cache_dir=cache, progress=lambda d, f: events.append((d, f))
    )
    return zoo, events, cache


# ------------------------------------------------------------------------------ recipe / hash


def test_same_recipe_same_hash_and_changes_change_it() -> None:
    assert default_recipe(reduced=True).key == default_recipe(reduced=True).key
    assert default_recipe().key == default_recipe().key
    keys = {
        default_recipe().key,
        default_recipe(reduced=True).key,
        default_recipe(random_state=1).key,
        tiny_recipe().key,
        tiny_recipe(epochs=2).key,
        tiny_recipe(random_state=5).key,
    }
    assert len(keys) == 6
    d = default_recipe().to_dict()
    assert recipe_hash(d) == default_recipe().key
    d["code_version"] = "something else"
    assert recipe_hash(d) != default_recipe().key


def test_recipe_hash_rejects_non_plain_values() -> None:
    with pytest.raises(ParameterError, match="plain values"):
        recipe_hash({"x": object()})
    with pytest.raises(ParameterError, match=r"length in \[1, 64\]"):
        recipe_hash({"x": 1}, length=0)


# ------------------------------------------------------------------------------ first build


def test_zoo_contents(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    zoo, _, _ = built
    sizes = default_recipe(reduced=True).sizes
    assert zoo.trained is True
    assert zoo.names == MODEL_NAMES == tuple(zoo.models)
    assert zoo.splits == SPLITS
    for s in SPLITS:
        assert zoo.labels[s].shape == (sizes[s],) and zoo.labels[s].dtype == np.int64
        assert 0 <= zoo.labels[s].min() and zoo.labels[s].max() <= 9
        for n in MODEL_NAMES:
            z = zoo.logits[s][n]
            assert z.shape == (sizes[s], 10) and z.dtype == np.float32
            assert np.isfinite(z).all()
    # labels are those of the files at the recorded rows
    _, test_y = load_fashion_mnist("test")
    assert np.array_equal(zoo.labels["test"], test_y[zoo.indices["test"]])


def test_models_learn_and_teacher_beats_student(
    built: tuple[FashionMnistZoo, list[Any], Path],
) -> None:
    zoo = built[0]
    acc = {n: zoo.accuracy("test", n) for n in zoo.names}
    assert all(a > 0.75 for a in acc.values()), acc  # chance is 0.1
    assert acc["teacher"] > acc["student"] + 0.01, acc
    # the teacher is also more accurate on the held-out calibration split
    assert zoo.accuracy("calibrate", "teacher") > zoo.accuracy("calibrate", "student")


def test_costs_are_ordered_and_positive(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    zoo = built[0]
    flops = zoo.costs("flops")
    assert flops == sorted(flops) and flops[0] > 0
    # the student MLP 784-128-10: exactly 2 FLOPs per multiply-add of its two layers
    assert zoo.flops["student"] == 2 * (784 * 128 + 128 * 10)
    assert zoo.params["student"] == 784 * 128 + 128 + 128 * 10 + 10
    for n in zoo.names:
        assert set(zoo.latency[n]) == {1, 256}
        assert all(v > 0 for v in zoo.latency[n].values())
    assert len(zoo.costs("latency", batch_size=256)) == 3
    summary = zoo.summary()
    assert list(summary) == list(MODEL_NAMES)
    assert summary["teacher"]["test_accuracy"] == zoo.accuracy("test", "teacher")


def test_models_take_raw_pixels(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    zoo = built[0]
    raw = zoo.images["test"][:64]
    assert raw.dtype == np.uint8 and raw.shape == (64, 28, 28)
    for n, model in zoo.models.items():
        assert not model.training
        assert all(p.device.type == "cpu" for p in model.parameters())
        with torch.inference_mode():
            direct = model(torch.from_numpy(raw.astype(np.float32))).numpy()
            from_uint8 = model(torch.from_numpy(raw)).numpy()
        np.testing.assert_allclose(direct, zoo.logits["test"][n][:64], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(from_uint8, direct, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(zoo.forward(n, raw), direct, rtol=1e-5, atol=1e-5)


def test_lazy_images_match_files(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    zoo = built[0]
    train_x, _ = load_fashion_mnist("train")
    assert np.array_equal(zoo.images["calibrate"], train_x[zoo.indices["calibrate"]])
    assert list(zoo.images) == list(SPLITS) and len(zoo.images) == 4
    with pytest.raises(UnknownNameError, match="split"):
        zoo.images["validation"]


def test_progress_reports(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    events = built[1]
    fractions = [f for _, f in events]
    assert len(events) > 10
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)  # monotone, for a progress bar
    assert fractions[-1] == 1.0
    descriptions = " ".join(d for d, _ in events)
    for n in MODEL_NAMES:
        assert f"training {n}" in descriptions


def test_cache_files_written_atomically(built: tuple[FashionMnistZoo, list[Any], Path]) -> None:
    zoo, _, cache = built
    assert zoo.path.parent.parent == cache and zoo.path.name == zoo.recipe.key
    names = sorted(p.name for p in zoo.path.iterdir())
    assert names == sorted(
        ["meta.json", "recipe.json", "splits.npz", "logits.npz"] + [f"{n}.pt" for n in MODEL_NAMES]
    )  # no temporary files left behind


# ------------------------------------------------------------------------------ reload


def test_second_call_loads_without_training(
    built: tuple[FashionMnistZoo, list[Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    zoo, _, cache = built

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(zoo_module, "train_one", no_training)
    events: list[tuple[str, float]] = []
    again = load_fashion_mnist_zoo(
        reduced=True, cache_dir=cache, progress=lambda d, f: events.append((d, f))
    )
    assert again.trained is False
    assert events == [("loaded from cache", 1.0)]
    assert again.build_seconds == pytest.approx(zoo.build_seconds)
    for s in SPLITS:
        assert np.array_equal(again.labels[s], zoo.labels[s])
        for n in MODEL_NAMES:
            assert np.array_equal(again.logits[s][n], zoo.logits[s][n])
    assert again.flops == zoo.flops and again.params == zoo.params and again.latency == zoo.latency
    raw = torch.from_numpy(zoo.images["select"][:32].astype(np.float32))
    for n in MODEL_NAMES:
        assert not again.models[n].training
        with torch.inference_mode():
            assert torch.equal(again.models[n](raw), zoo.models[n](raw))


def test_cache_dir_from_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    zoo = load_fashion_mnist_zoo(recipe=tiny_recipe())
    assert zoo.trained and zoo.path.is_relative_to(tmp_path)
    assert load_fashion_mnist_zoo(recipe=tiny_recipe()).trained is False
    assert load_fashion_mnist_zoo(recipe=tiny_recipe(), force=True).trained is True


def test_training_is_deterministic(tmp_path: Path) -> None:
    a = load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path / "a")
    b = load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path / "b")
    assert a.trained and b.trained
    for s in SPLITS:
        assert np.array_equal(a.logits[s]["student"], b.logits[s]["student"])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training


def test_training_restores_global_torch_state(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_fashion_mnist_zoo(recipe=tiny_recipe(random_state=7), cache_dir=tmp_path)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_partial_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    first = load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path)
    (first.path / "logits.npz").unlink()
    second = load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path)
    assert second.trained is True
    np.testing.assert_array_equal(second.logits["test"]["student"], first.logits["test"]["student"])
    (first.path / "student.pt").write_bytes(b"not a state dict")
    assert load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path).trained is True


# ------------------------------------------------------------------------------ errors


def test_zoo_errors(built: tuple[FashionMnistZoo, list[Any], Path], tmp_path: Path) -> None:
    zoo = built[0]
    with pytest.raises(UnknownNameError, match="Expected a split"):
        zoo.accuracy("valid", "student")
    with pytest.raises(UnknownNameError, match="Expected a model"):
        zoo.accuracy("test", "oracle")
    with pytest.raises(UnknownNameError, match="kind 'flops' or 'latency'"):
        zoo.costs("watts")
    with pytest.raises(ParameterError, match=r"batch_size in \[1, 256\]"):
        zoo.costs("latency", batch_size=7)
    with pytest.raises(ParameterError, match="ZooRecipe"):
        load_fashion_mnist_zoo(recipe={"models": []}, cache_dir=tmp_path)  # type: ignore[arg-type]
    twice = ZooRecipe(models=tiny_recipe().models * 2, sizes=TINY_SIZES)
    with pytest.raises(ParameterError, match="distinct model names"):
        load_fashion_mnist_zoo(recipe=twice, cache_dir=tmp_path)
    bad_arch = ZooRecipe(models=(ModelRecipe("s", "resnet", {}, epochs=1),), sizes=TINY_SIZES)
    with pytest.raises(UnknownNameError, match="architecture"):
        load_fashion_mnist_zoo(recipe=bad_arch, cache_dir=tmp_path)
    with pytest.raises(DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist_zoo(recipe=tiny_recipe(), cache_dir=tmp_path, root=tmp_path / "none")


def test_importing_data_does_not_import_torch() -> None:
    code = "import sys, cascadekit.data, cascadekit.costs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------- pinned kernels


def test_models_are_trained_with_pinned_kernels(
    built: tuple[FashionMnistZoo, list[Any], Path],
) -> None:
    # trained in a child process whose PyTorch, oneDNN and MKL kernels are pinned to AVX2, so
    # that another processor builds the same models; this process keeps its native kernels
    zoo = built[0]
    meta = json.loads((zoo.path / "meta.json").read_text())
    assert meta["kernels"] == KERNELS_ID == zoo.recipe.kernels == "avx2"
    assert not kernels_pinned()
    assert ZooRecipe.from_dict(zoo.recipe.to_dict()).key == zoo.recipe.key


def test_pinned_child_errors_come_back_clearly() -> None:
    with pytest.raises(CascadeError, match=r"\(json:loads\) failed with exit code 1"):
        run_pinned("json:loads", ["{not json"])
    with pytest.raises(CascadeError, match="run it through load_fashion_mnist_zoo"):
        zoo_module.train_in_child([json.dumps(tiny_recipe().to_dict()), "/nowhere", ""])
