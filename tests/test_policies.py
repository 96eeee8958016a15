"""Learned routing policies: the WBC reduction against brute force, DAGs, early-exit heads,
auto-selection, router files and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from cascadekit.cli import app
from cascadekit.data.digits import load_digits_pair
from cascadekit.errors import (
    DataNotFoundError,
    InputShapeError,
    NotCalibratedError,
    ParameterError,
    RouterFileError,
    UnknownNameError,
)
from cascadekit.policies import (
    Decider,
    FeatureSpec,
    LearnedPolicy,
    PolicyGraph,
    PolicyRouter,
    auto_select,
    fit_decider,
    lambda_sweep,
    load_policy_router,
    logit_features,
    oracle_route,
    policy_curve,
    save_policy_router,
    wbc_targets,
)
from cascadekit.router import Router
from cascadekit.schemas import load_schema

runner = CliRunner()


class Memorizer:
    """A perfect classifier: column 0 of X is the row id; it recalls each row's label."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Memorizer:
        self.table_ = {int(i): int(v) for i, v in zip(X[:, 0], y, strict=True)}
        return self

    def decision_function(self, X: Any) -> Any:
        # rows never seen (zero weight: either answer is as good) -> take the option
        return np.array([1.0 if self.table_.get(int(i), 1) else -1.0 for i in X[:, 0]])


def _ids(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)[:, None]


def _paths(graph: PolicyGraph) -> list[tuple[list[int], int]]:
    """Every path from node 0: (visited nodes, exit node)."""
    out = []

    def walk(k: int, seen: list[int]) -> None:
        out.append(([*seen, k], k))
        for c in graph.children[k]:
            walk(c, [*seen, k])

    walk(0, [])
    return out


def _brute_force(graph: PolicyGraph, correct: np.ndarray, lam: float) -> np.ndarray:
    """Per input, the minimum of loss + lam * cost / ref over every path."""
    cost = np.asarray(graph.costs) / graph.reference_cost
    best = np.full(correct.shape[1], np.inf)
    for visited, k in _paths(graph):
        v = (1.0 - correct[k]) + lam * cost[visited].sum()
        best = np.minimum(best, v)
    return best


def _objective(route: Any, graph: PolicyGraph, correct: np.ndarray, lam: float) -> np.ndarray:
    return (1.0 - route.value(correct)) + lam * route.cost_per_input / graph.reference_cost


GRAPHS = [
    PolicyGraph.chain([1.0, 3.0, 10.0]),
    PolicyGraph.skip_dag([1.0, 3.0, 10.0]),
    PolicyGraph.skip_dag([1.0, 2.0, 4.0, 10.0]),
]


@pytest.mark.parametrize("graph", GRAPHS, ids=["chain3", "dag3", "dag4"])
@pytest.mark.parametrize("lam", [0.0, 0.05, 0.3, 2.0])
def test_reduction_with_perfect_classifier_is_brute_force_optimal(
    graph: PolicyGraph, lam: float
) -> None:
    rng = np.random.default_rng(int(lam * 100) + graph.n_nodes)
    n = 60
    correct = rng.uniform(size=(graph.n_nodes, n)) < [[0.5], [0.6], [0.7], [0.8]][: graph.n_nodes]
    correct = correct.astype(np.float64)
    feats = [_ids(n)] * graph.n_nodes
    pol = LearnedPolicy(graph, lam=lam, classifier=Memorizer()).fit(feats, correct)
    route = pol.route(feats)
    np.testing.assert_allclose(
        _objective(route, graph, correct, lam), _brute_force(graph, correct, lam)
    )
    orc = oracle_route(graph, correct, lam)
    np.testing.assert_allclose(
        _objective(orc, graph, correct, lam), _brute_force(graph, correct, lam)
    )
    assert pol.train_objective_ == pytest.approx(_brute_force(graph, correct, lam).mean())


@pytest.mark.parametrize("graph", GRAPHS, ids=["chain3", "dag3", "dag4"])
def test_lambda_zero_perfect_classifier_equals_oracle(graph: PolicyGraph) -> None:
    rng = np.random.default_rng(3)
    n = 80
    correct = rng.uniform(size=(graph.n_nodes, n)) < 0.6
    feats = [_ids(n)] * graph.n_nodes
    pol = LearnedPolicy(graph, lam=0.0, classifier=Memorizer()).fit(feats, correct)
    route, orc = pol.route(feats), oracle_route(graph, correct, 0.0)
    np.testing.assert_array_equal(route.exit_node, orc.exit_node)
    # the oracle: accuracy = share of inputs some node answers right
    assert route.accuracy(correct) == pytest.approx(np.mean(correct.any(axis=0)))
    # ... at the first node on its path that is right (chain: the cheapest right stage)
    if graph.is_chain:
        first_right = np.where(correct.any(axis=0), np.argmax(correct, axis=0), 0)
        np.testing.assert_array_equal(route.exit_node, first_right)


@pytest.mark.parametrize("graph", GRAPHS, ids=["chain3", "dag3", "dag4"])
def test_cost_is_monotone_in_lambda(graph: PolicyGraph) -> None:
    rng = np.random.default_rng(5)
    n = 120
    correct = rng.uniform(size=(graph.n_nodes, n)) < np.linspace(0.5, 0.9, graph.n_nodes)[:, None]
    feats = [_ids(n)] * graph.n_nodes
    lams = [0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 3.0, 20.0]
    pols = lambda_sweep(graph, feats, correct, lams, classifier=Memorizer())
    costs = [p.route(feats).relative_cost for p in pols]
    accs = [p.route(feats).accuracy(correct) for p in pols]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(costs))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(accs))
    assert costs[-1] == pytest.approx(graph.costs[0] / graph.reference_cost)


def test_two_stage_weights_match_the_paper() -> None:
    # both right, S wrong & T right, S right & T wrong, both wrong; lam * c_T = 0.3
    cs, ct = np.array([1, 0, 1, 0.0]), np.array([1, 1, 0, 0.0])
    take, w = wbc_targets(1 - cs, 0.3 + 1 - ct)
    assert take.tolist() == [True, False, True, True]
    np.testing.assert_allclose(w, [0.3, 0.7, 1.3, 0.3])


def test_dag_jumps_over_a_useless_middle_model() -> None:
    g = PolicyGraph.skip_dag([1.0, 3.0, 10.0], names=["A", "G", "R"])
    n = 50
    correct = np.vstack([np.zeros(n), np.zeros(n), np.ones(n)])  # only R is ever right
    route = (
        LearnedPolicy(g, lam=0.1, classifier=Memorizer())
        .fit([_ids(n)] * 3, correct)
        .route([_ids(n)] * 3)
    )
    assert (route.exit_node == 2).all()
    assert not route.visited[:, 1].any()  # A -> R directly: G is never run
    np.testing.assert_allclose(route.cost_per_input, 11.0)


def test_learned_policy_on_real_digits_logits() -> None:
    pair = load_digits_pair()
    s, t = pair.logits["select"], pair.logits["test"]
    ys, yt = pair.labels["select"], pair.labels["test"]
    corr_s = [s["student"].argmax(1) == ys, s["teacher"].argmax(1) == ys]
    corr_t = [t["student"].argmax(1) == yt, t["teacher"].argmax(1) == yt]
    pols = lambda_sweep([1.0, 10.0], [logit_features(s["student"])], corr_s, [0.0, 0.1, 0.5, 2.0])
    routes = [p.route([logit_features(t["student"])]) for p in pols]
    shares = [r.teacher_share for r in routes]
    assert shares[-1] == 0.0 and shares[0] >= shares[-1]
    curve = policy_curve(routes, corr_t)
    assert curve.accuracy[0] == pytest.approx(np.mean(corr_t[0]))
    assert curve.accuracy[-1] == pytest.approx(np.mean(corr_t[1]))


def test_hgb_export_matches_sklearn() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = X[:, 0] + X[:, 1] ** 2 > 0.8
    w = rng.uniform(0.1, 2, size=600)
    d = fit_decider("hgb", X, y, w)
    ref = HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    ).fit(X, y.astype(int), sample_weight=w / w.mean())
    np.testing.assert_allclose(d.decision(X), ref.decision_function(X), atol=1e-9)


def test_hgb_decider_rejects_what_it_cannot_copy_exactly() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    with pytest.raises(ParameterError, match="could not read the trees of this LogisticRegression"):
        Decider.from_hgb(LogisticRegression().fit(X, X[:, 0] > 0), X)
    three = HistGradientBoostingClassifier(max_iter=5).fit(X, np.digitize(X[:, 0], [-0.5, 0.5]))
    with pytest.raises(ParameterError, match="Only binary classifiers are supported"):
        Decider.from_hgb(three, X)
    two = HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] > 0)
    np.testing.assert_array_equal(Decider.from_hgb(two, X).decision(X), two.decision_function(X))


# ----------------------------------------------------------------------------------------------
# early exit


def test_exit_heads_leave_the_frozen_network_unchanged(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from cascadekit.policies.early_exit import fit_exit_heads, weights_fingerprint

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 7 * 7, 3),
    )
    net.train()  # the hooks must not leave it in eval mode either
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fp = weights_fingerprint(net)
    x = torch.randn(90, 1, 14, 14)
    y = np.asarray(net(x).argmax(1))
    heads = fit_exit_heads(net, ["2"], x, y, cache=True, cache_dir=str(tmp_path))
    logits = heads.exit_logits(net, x)
    assert net.training
    assert weights_fingerprint(net) == fp
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert [z.shape for z in logits] == [(90, 3), (90, 3)]
    g = heads.graph()
    assert g.n_nodes == 2 and g.reference_cost == pytest.approx(heads.network_flops)
    assert sum(g.costs) == pytest.approx(heads.network_flops + heads.head_flops[0])
    # second call: loaded from the cache (same arrays)
    again = fit_exit_heads(net, ["2"], x, y, cache=True, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again.weights[0], heads.weights[0])
    assert list((tmp_path / "exit_heads").glob("*.npz"))


# ----------------------------------------------------------------------------------------------
# auto-selection, router files, CLI


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    student = rng.normal(size=(n, 4))
    student[np.arange(n), y] += rng.uniform(0, 4, n)
    teacher = rng.normal(size=(n, 4))
    teacher[np.arange(n), y] += 5.0
    return student, teacher, y


def test_auto_picks_a_fixed_score_when_it_is_best() -> None:
    from sklearn.dummy import DummyClassifier

    student, teacher, y = _synthetic(900, 0)
    res = auto_select([student, teacher], y, classifiers=[DummyClassifier()], folds=3)
    assert res.kind == "score" and res.router is None
    learned = next(c for c in res.candidates if c["kind"] == "learned")
    best_fixed = max(c["mean"] for c in res.candidates if c["kind"] == "score")
    assert best_fixed > learned["mean"]
    assert res.name == max(res.candidates, key=lambda c: c["mean"])["name"]
    assert res.calibration_rows.size == 900


def test_auto_learned_keeps_threshold_rows_apart() -> None:
    student, teacher, y = _synthetic(600, 1)
    res = auto_select([student, teacher], y, scores=["energy"], classifiers=["logistic"])
    assert {c["name"] for c in res.candidates} == {"energy", "learned-logistic"}
    if res.kind == "learned":
        assert res.calibration_rows.size == 300
        assert res.out_of_fold is not None and res.out_of_fold.shape == (600,)


@pytest.mark.parametrize("classifier", ["logistic", "hgb"])
def test_save_load_round_trip(tmp_path: Path, classifier: str) -> None:
    student, teacher, y = _synthetic(500, 2)
    mid = 0.5 * (student + teacher)
    g = PolicyGraph.skip_dag([1.0, 3.0, 10.0], names=["s", "m", "t"])
    spec = FeatureSpec(n_extra=2)
    extra = np.random.default_rng(0).normal(size=(500, 2))
    correct = [o.argmax(1) == y for o in (student, mid, teacher)]
    feats = [spec.build(student, extra), FeatureSpec().build(mid), None]
    pol = LearnedPolicy(g, lam=0.05, classifier=classifier).fit(feats, correct)
    pol.thresholds_ = [0.3, 0.0, 0.0]
    path = tmp_path / "r.json"
    side = save_policy_router(PolicyRouter(pol, spec), path)
    assert side.name == "r.policy.npz"
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, load_schema("router"))
    rt = Router.load(path)  # the generic loader accepts it ...
    assert rt.policy is not None and rt.score == "learned" and rt.n_stages == 3
    with pytest.raises(RouterFileError, match="learned policy"):
        rt.to_cascade()
    loaded = load_policy_router(path)
    spec2 = loaded.spec
    r1 = pol.route(feats)
    r2 = loaded.policy.route([spec2.build(student, extra), FeatureSpec().build(mid), None])
    np.testing.assert_array_equal(r1.exit_node, r2.exit_node)
    r3, preds = loaded.predict([student, mid, teacher], extra)
    np.testing.assert_array_equal(r3.exit_node, r1.exit_node)
    assert preds.shape == (500,)
    # a tampered sidecar is refused
    side.write_bytes(side.read_bytes() + b"x")
    with pytest.raises(RouterFileError, match="does not match the router"):
        load_policy_router(path)


def _custom_policy(classifier: Any = None) -> tuple[LearnedPolicy, list[Any]]:
    from sklearn.linear_model import LogisticRegression

    student, teacher, y = _synthetic(300, 3)
    correct = [student.argmax(1) == y, teacher.argmax(1) == y]
    feats = [logit_features(student)]
    pol = LearnedPolicy([1, 10], lam=0.1, classifier=classifier or LogisticRegression())
    return pol.fit(feats, correct), feats


def test_custom_classifier_without_skops_needs_allow_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "skops.io", None)  # as if skops were not installed
    pol, feats = _custom_policy()
    assert not pol.portable
    with pytest.raises(ParameterError, match="allow_pickle=True"):
        save_policy_router(PolicyRouter(pol), tmp_path / "r.json")
    save_policy_router(PolicyRouter(pol), tmp_path / "r.json", allow_pickle=True)
    assert json.loads((tmp_path / "r.json").read_text())["policy"]["objects_file"] == "r.policy.pkl"
    with pytest.raises(RouterFileError, match="runs code"):
        load_policy_router(tmp_path / "r.json")
    back = load_policy_router(tmp_path / "r.json", allow_pickle=True)
    np.testing.assert_array_equal(back.policy.route(feats).exit_node, pol.route(feats).exit_node)
    # the pickle is covered by the router's SHA-256 too
    pkl = tmp_path / "r.policy.pkl"
    pkl.write_bytes(pkl.read_bytes() + b".")
    with pytest.raises(RouterFileError, match=r"'r.policy.pkl' does not match the router"):
        load_policy_router(tmp_path / "r.json", allow_pickle=True)


def test_custom_classifier_round_trips_through_skops(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    pol, feats = _custom_policy()
    save_policy_router(PolicyRouter(pol), tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(doc, load_schema("router"))
    assert doc["policy"]["objects_file"] == "r.policy.skops"
    assert len(doc["policy"]["objects_sha256"]) == 64
    back = load_policy_router(tmp_path / "r.json")  # a scikit-learn estimator is allow-listed
    np.testing.assert_array_equal(back.policy.route(feats).exit_node, pol.route(feats).exit_node)
    obj = tmp_path / "r.policy.skops"
    obj.write_bytes(obj.read_bytes() + b".")
    with pytest.raises(RouterFileError, match=r"'r.policy.skops' does not match the router"):
        load_policy_router(tmp_path / "r.json")


def _rewrite_skops(path: Path, edit: Any) -> str:
    """Rewrite the schema of a .skops zip with ``edit(schema)``; return the new SHA-256."""
    import hashlib
    import zipfile

    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(files["schema.json"])
    edit(schema)
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_router_file_naming_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    """An attacker ships a router whose objects file calls os.system when it is built."""
    import os
    import sys

    from skops.io import dump

    pol, _ = _custom_policy()
    save_policy_router(PolicyRouter(pol), tmp_path / "r.json")
    marker = tmp_path / "pwned"
    parts = tmp_path / "parts.skops"
    dump({"args": (f"touch {marker}",), "attrs": {}}, parts)
    with __import__("zipfile").ZipFile(parts) as z:
        part = json.loads(z.read("schema.json"))["content"]
    evil = {
        "__class__": "system",
        "__module__": os.system.__module__,  # "posix": the loader resolves it to os.system
        "__loader__": "LossNode",  # a reduce node: calls the class with the args
        "__reduce__": {"args": part["args"]},
        "content": part["attrs"],
    }

    def inject(schema: dict[str, Any]) -> None:
        schema["content"]["n0_d0"] = evil
        schema["content"]["n0_d1"] = {**evil, "__module__": "antigravity", "__class__": "x"}

    digest = _rewrite_skops(tmp_path / "r.policy.skops", inject)
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["policy"]["objects_sha256"] = digest  # the attacker controls both files
    (tmp_path / "r.json").write_text(json.dumps(doc))
    refused = f"{os.system.__module__}.system"
    with pytest.raises(RouterFileError, match=rf"not on the allow-list .*antigravity.x, {refused}"):
        load_policy_router(tmp_path / "r.json")
    assert not marker.exists()  # the command never ran
    assert "antigravity" not in sys.modules  # and no module it names was imported
    # the CLI refuses it the same way
    np.save(tmp_path / "s.npy", np.zeros((2, 4)))
    np.save(tmp_path / "t.npy", np.zeros((2, 4)))
    res = runner.invoke(
        app, ["route", str(tmp_path / "r.json"), str(tmp_path / "s.npy"), str(tmp_path / "t.npy")]
    )
    assert res.exit_code != 0 and "allow-list" in res.output
    assert not marker.exists()


def test_tree_classifier_is_refused_unless_its_types_are_trusted(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    from sklearn.tree import DecisionTreeClassifier

    pol, feats = _custom_policy(DecisionTreeClassifier(max_depth=3, random_state=0))
    save_policy_router(PolicyRouter(pol), tmp_path / "r.json")
    with pytest.raises(RouterFileError, match=r"allow-list of safe types: sklearn.tree._tree.Tree"):
        load_policy_router(tmp_path / "r.json")
    back = load_policy_router(tmp_path / "r.json", trusted_types=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(back.policy.route(feats).exit_node, pol.route(feats).exit_node)


@pytest.mark.parametrize(
    "name",
    ["../r.policy.npz", "sub/r.policy.npz", "..", "sub\\r.policy.npz", "ABSOLUTE", None],
)
def test_sidecar_names_must_stay_in_the_router_folder(tmp_path: Path, name: Any) -> None:
    student, teacher, y = _synthetic(200, 4)
    pol = LearnedPolicy([1, 10], lam=0.1).fit(
        [logit_features(student)], [student.argmax(1) == y, teacher.argmax(1) == y]
    )
    inner = tmp_path / "inner"
    inner.mkdir()
    side = save_policy_router(PolicyRouter(pol), inner / "r.json")
    (inner / "sub").mkdir()
    (inner / "sub" / "r.policy.npz").write_bytes(side.read_bytes())
    (tmp_path / "r.policy.npz").write_bytes(side.read_bytes())
    doc = json.loads((inner / "r.json").read_text())
    doc["policy"]["file"] = str(side.resolve()) if name == "ABSOLUTE" else name
    (inner / "r.json").write_text(json.dumps(doc))
    with pytest.raises(RouterFileError, match=r'"policy.file" to be a plain file name'):
        load_policy_router(inner / "r.json")


def test_sidecar_sha256_is_required(tmp_path: Path) -> None:
    student, teacher, y = _synthetic(200, 5)
    pol = LearnedPolicy([1, 10], lam=0.1).fit(
        [logit_features(student)], [student.argmax(1) == y, teacher.argmax(1) == y]
    )
    save_policy_router(PolicyRouter(pol), tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    del doc["policy"]["sha256"]
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(RouterFileError, match=r'SHA-256 of .r.policy.npz. in "policy.sha256"'):
        load_policy_router(tmp_path / "r.json")
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(RouterFileError, match="it is not valid JSON"):
        load_policy_router(tmp_path / "r.json")


def test_old_router_files_still_load_and_validate(tmp_path: Path) -> None:
    old = {
        "format": "cascadekit.router",
        "format_version": 1,
        "score": "margin",
        "temperature": 1.0,
        "thresholds": [1.5, None],
        "costs": [1, 2, 7],
        "stage_names": None,
        "class_maps": None,
        "other_class": None,
        "calibration": {},
    }
    jsonschema.validate(old, load_schema("router"))
    (tmp_path / "old.json").write_text(json.dumps(old))
    r = Router.load(tmp_path / "old.json")
    assert r.policy is None and "policy" not in r.to_dict()
    bad = {**old, "policy": {"graph": {}}}
    with pytest.raises(RouterFileError, match='"policy" only with "score": "learned"'):
        Router.from_dict(bad)


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pol")
    pair = load_digits_pair()
    out = {}
    for split in ("calibrate", "test"):
        for m in ("student", "teacher"):
            out[f"{split}_{m}"] = d / f"{split}_{m}.npy"
            np.save(out[f"{split}_{m}"], pair.logits[split][m])
        out[f"{split}_y"] = d / f"{split}_y.npy"
        np.save(out[f"{split}_y"], pair.labels[split])
    out["dir"] = d
    return out


def test_cli_auto_evaluate_calibrate_route(digits_files: dict[str, Path]) -> None:
    f = digits_files
    ev = f["dir"] / "ev.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(f["calibrate_student"]),
            str(f["calibrate_teacher"]),
            "--labels",
            str(f["calibrate_y"]),
            "--score",
            "auto",
            "--json",
            str(ev),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(ev.read_text())
    names = {c["name"] for c in rep["auto"]["candidates"]}
    assert rep["score"] == rep["auto"]["chosen"] and rep["score"] in names
    router = f["dir"] / "router.json"
    res = runner.invoke(
        app,
        [
            "calibrate",
            str(f["calibrate_student"]),
            str(f["calibrate_teacher"]),
            "--labels",
            str(f["calibrate_y"]),
            "--score",
            "auto",
            "--teacher-share",
            "0.2",
            "--save-router",
            str(router),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(router.read_text())
    jsonschema.validate(doc, load_schema("router"))
    out = f["dir"] / "route.json"
    res = runner.invoke(
        app,
        [
            "route",
            str(router),
            str(f["test_student"]),
            str(f["test_teacher"]),
            "--labels",
            str(f["test_y"]),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    routed = json.loads(out.read_text())
    assert 0.0 <= routed["teacher_share"] <= 1.0 and len(routed["stage"]) == 450


def test_cli_auto_refuses_a_guarantee(digits_files: dict[str, Path]) -> None:
    f = digits_files
    res = runner.invoke(
        app,
        [
            "calibrate",
            str(f["calibrate_student"]),
            str(f["calibrate_teacher"]),
            "--labels",
            str(f["calibrate_y"]),
            "--score",
            "auto",
            "--max-accuracy-drop",
            "0.02",
        ],
    )
    assert res.exit_code == 1 and "would be void" in res.output


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_input() -> None:
    g = PolicyGraph.chain([1.0, 10.0])
    x = _ids(10)
    correct = [np.ones(10, bool), np.ones(10, bool)]
    with pytest.raises(ParameterError, match="lam .* finite number >= 0"):
        LearnedPolicy(g, lam=-1).fit([x], correct)
    with pytest.raises(ParameterError, match="needs features; got None"):
        LearnedPolicy(g).fit([None, None], correct)
    with pytest.raises(ParameterError, match="correctness of every node"):
        LearnedPolicy(g).fit([x], correct[:1])
    with pytest.raises(UnknownNameError, match="Unknown classifier 'svm'"):
        fit_decider("svm", x, np.arange(10) % 2 == 0, np.ones(10))
    with pytest.raises(ParameterError, match="does not take sample_weight"):
        from sklearn.neighbors import KNeighborsClassifier

        fit_decider(KNeighborsClassifier(), x, np.arange(10) % 2 == 0, np.ones(10))
    with pytest.raises(NotCalibratedError, match="not fitted yet"):
        LearnedPolicy(g).route([x])
    pol = LearnedPolicy(g, classifier=Memorizer()).fit([x], [np.arange(10) % 2 == 0, correct[1]])
    with pytest.raises(InputShapeError, match="trained on 1 features; got 2"):
        pol.route([np.hstack([x, x])])
    with pytest.raises(ParameterError, match="larger index"):
        PolicyGraph(("a", "b"), (1.0, 1.0), ((0,), ()))
    with pytest.raises(ParameterError, match="reachable"):
        PolicyGraph(("a", "b", "c"), (1.0, 1.0, 1.0), ((2,), (2,), ()))
    with pytest.raises(ParameterError, match="correct\\[0\\] in \\[0, 1\\]"):
        oracle_route(g, [np.full(10, 2.0), np.ones(10)])
    with pytest.raises(ParameterError, match="2-stage cascade; got 3 stages"):
        auto_select([np.eye(3)] * 3, np.arange(3))
    with pytest.raises(ParameterError, match="extra feature columns"):
        FeatureSpec(n_extra=2).build(np.eye(3))
    with pytest.raises(DataNotFoundError, match="Expected a router file"):
        load_policy_router("/nonexistent/router.json")


def test_brute_force_enumerates_every_policy_on_a_tiny_problem() -> None:
    """Cross-check _brute_force itself: enumerate every deterministic per-input policy."""
    g = PolicyGraph.skip_dag([1.0, 2.0, 5.0])
    correct = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    paths = _paths(g)
    lam = 0.4
    best = np.inf
    for choice in itertools.product(range(len(paths)), repeat=3):
        tot = 0.0
        for i, pi in enumerate(choice):
            visited, k = paths[pi]
            tot += (1 - correct[k, i]) + lam * sum(g.costs[v] for v in visited) / g.reference_cost
        best = min(best, tot)
    assert best == pytest.approx(_brute_force(g, correct, lam).sum())


def test_a_learned_chain_router_routes_as_a_cascade(tmp_path: Path) -> None:
    """Router.to_cascade runs a chain policy on the routing engine; the CLI's route uses it and
    answers as the policy itself does."""
    student, teacher, y = _synthetic(400, 3)
    spec = FeatureSpec()
    correct = [student.argmax(1) == y, teacher.argmax(1) == y]
    pol = LearnedPolicy([1.0, 10.0], lam=0.05).fit([spec.build(student)], correct)
    save_policy_router(PolicyRouter(pol, spec), tmp_path / "r.json")
    route, preds = load_policy_router(tmp_path / "r.json").predict([student, teacher])
    assert 0 < route.teacher_share < 1
    result = Router.load(tmp_path / "r.json").to_cascade([student, teacher]).route()
    np.testing.assert_array_equal(result.stage, route.exit_node)
    np.testing.assert_array_equal(result.predictions, preds)
    np.save(tmp_path / "s.npy", student)
    np.save(tmp_path / "t.npy", teacher)
    out = tmp_path / "routed.json"
    files = [str(tmp_path / name) for name in ("r.json", "s.npy", "t.npy")]
    res = runner.invoke(app, ["route", *files, "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["score"] == "learned" and doc["stage"] == route.exit_node.tolist()
    assert doc["prediction"] == preds.tolist()
    assert doc["relative_cost"] == pytest.approx(route.relative_cost)
