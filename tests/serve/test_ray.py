"""The cascade on Ray: Ray Data offline evaluation and the Ray Serve application.

Ray starts once for this module (``num_cpus=2``, loopback only, no dashboard, no usage stats)
and every replica and actor takes half a CPU. The Ray Serve app is deployed from
``examples/ray_serve.yaml`` (port and CPUs adjusted) and torn down after its test class, so the
Ray Data tests always find free CPUs. Real data throughout: the Fashion-MNIST zoo's test split.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")
yaml = pytest.importorskip("yaml")
httpx = pytest.importorskip("httpx")

from cascadekit import Cascade, oip, scores  # noqa: E402
from cascadekit.errors import ParameterError  # noqa: E402
from cascadekit.offline import evaluate_offline, read_results, write_parquet_dataset  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fashion-mnist"


@pytest.fixture(scope="module")
def ray_session() -> Any:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_no_progress_timeout_s = 180  # fail, don't hang, if resources run out
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outputs(doc: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: oip.decode_tensor(o) for o in doc["outputs"]}


def _body(images: np.ndarray, **parameters: Any) -> bytes:
    doc: dict[str, Any] = {
        "inputs": [
            {
                "name": "image",
                "shape": list(images.shape),
                "datatype": "UINT8",
                "data": images.ravel().tolist(),
            }
        ]
    }
    if parameters:
        doc["parameters"] = parameters
    return json.dumps(doc).encode()


def _near(score: np.ndarray, threshold: float) -> np.ndarray:
    """Scores within numerical resolution of the threshold may route either way."""
    return scores.near_threshold(score, threshold)


# ----------------------------------------------------------------------------------- Ray Data


class TestRayData:
    def test_saved_logits_equal_in_process_route(
        self, ray_session: Any, zoo: Any, tmp_path: Path
    ) -> None:
        logits = zoo.logits["test"]
        names = ["student", "intermediate", "teacher"]  # three stages: N > 2 too
        labels = zoo.labels["test"]
        write_parquet_dataset(
            tmp_path / "data",
            logits={n: logits[n] for n in names},
            labels=labels,
            rows_per_file=2500,
        )
        costs = [float(zoo.flops[n]) for n in names]
        cascade = Cascade.from_outputs(
            [logits[n] for n in names],
            costs=costs,
            score="max_softmax",
            thresholds=[scores.from_probability_form("max_softmax", p) for p in (0.95, 0.9)],
        )
        result = evaluate_offline(
            tmp_path / "data",
            cascade,
            tmp_path / "out",
            logits_columns=names,
            label_column="label",
            batch_size=700,
            replicas=[1, 1, 1],
            num_cpus=0.25,
        )
        ref = cascade.route()
        rows = read_results(tmp_path / "out")
        np.testing.assert_array_equal(rows["id"], np.arange(labels.shape[0]))
        np.testing.assert_array_equal(rows["prediction"], ref.predictions)
        np.testing.assert_array_equal(rows["stage"], ref.stage)
        for k in range(2):
            np.testing.assert_array_equal(rows[f"score_{k}"], ref.stage_scores[:, k])
        np.testing.assert_array_equal(rows["fallback"], ref.fallback)
        np.testing.assert_array_equal(rows["correct"], ref.predictions == labels)
        assert result.n == labels.shape[0]
        np.testing.assert_array_equal(result.stage_counts, np.bincount(ref.stage, minlength=3))
        assert result.accuracy == ref.accuracy(labels)
        assert result.relative_cost == pytest.approx(ref.relative_cost, rel=1e-12)
        assert 0 < result.stage_shares[1] and 0 < result.teacher_share < 1

    def test_specialized_router_equals_route_field_by_field(
        self, ray_session: Any, tmp_path: Path
    ) -> None:
        """The checked-in toy router of test_drivers.py ("other" gate, class map, 3 stages)."""
        from serve_helpers import TOY_SLICES, toy_inputs

        from cascadekit.router import Router

        x = toy_inputs(1000)
        outputs = [x[:, s] for s in TOY_SLICES]
        names = ["student", "middle", "teacher"]
        write_parquet_dataset(tmp_path / "data", logits=dict(zip(names, outputs, strict=True)))
        cascade = Router.load(ROOT / "tests" / "data" / "router_toy_specialized.json").to_cascade(
            outputs
        )
        evaluate_offline(
            tmp_path / "data",
            cascade,
            tmp_path / "out",
            logits_columns=names,
            batch_size=300,
            num_cpus=0.25,
        )
        ref = cascade.route()
        rows = read_results(tmp_path / "out")
        np.testing.assert_array_equal(rows["prediction"], ref.predictions)
        np.testing.assert_array_equal(rows["stage"], ref.stage)
        np.testing.assert_array_equal(rows["fallback"], ref.fallback)
        for k in range(2):
            np.testing.assert_array_equal(rows[f"score_{k}"], ref.stage_scores[:, k])
        assert set(ref.stage.tolist()) == {0, 1, 2}

    def test_live_models_equal_in_process_predict(
        self, ray_session: Any, zoo: Any, choice: Any, tmp_path: Path
    ) -> None:
        from cascadekit.serve.demo import fashion_mnist_model

        images, labels = zoo.images["test"][:3000], zoo.labels["test"][:3000]
        write_parquet_dataset(tmp_path / "data", inputs=images, labels=labels, rows_per_file=1000)
        cascade = fashion_mnist_model(zoo, choice=choice).cascade
        result = evaluate_offline(
            tmp_path / "data",
            cascade,
            tmp_path / "out",
            label_column="label",
            batch_size=512,
            replicas=[1, 1],
            num_cpus=[0.5, 0.5],
        )
        ref = cascade.predict(images, probabilities=False)
        rows = read_results(tmp_path / "out")
        threshold = float(cascade.thresholds[0])  # type: ignore[index]
        exempt = _near(ref.stage_scores[:, 0], threshold)
        assert exempt.mean() < 0.001
        ok = ~exempt
        np.testing.assert_array_equal(rows["prediction"][ok], ref.predictions[ok])
        np.testing.assert_array_equal(rows["stage"][ok], ref.stage[ok])
        np.testing.assert_allclose(
            rows["score_0"], ref.stage_scores[:, 0], rtol=scores.SCORE_RTOL, atol=1e-5
        )
        assert result.teacher_share == pytest.approx(ref.teacher_share, abs=0.01)
        assert result.accuracy == pytest.approx(ref.accuracy(labels), abs=0.01)

    def test_bad_arguments_raise_clear_errors(
        self, ray_session: Any, zoo: Any, tmp_path: Path
    ) -> None:
        logits = zoo.logits["test"]
        c = Cascade.from_outputs([logits["student"][:50], logits["teacher"][:50]], thresholds=[1])
        write_parquet_dataset(tmp_path / "d", logits={"s": logits["student"][:50]})
        with pytest.raises(ParameterError, match=r"no column\(s\) \['t'\]; it has \['id', 's'\]"):
            evaluate_offline(
                tmp_path / "d", c, tmp_path / "o", logits_columns=["s", "t"], num_cpus=0.25
            )
        with pytest.raises(ParameterError, match="one logits column per stage"):
            evaluate_offline(tmp_path / "d", c, tmp_path / "o", logits_columns=["s"], num_cpus=0.25)
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("")
        with pytest.raises(ParameterError, match="is not empty.*overwrite=True"):
            evaluate_offline(
                tmp_path / "d", c, tmp_path / "full", logits_columns=["s", "s"], num_cpus=0.25
            )
        with pytest.raises(ParameterError, match="has no model"):
            evaluate_offline(tmp_path / "d", c, tmp_path / "o2", num_cpus=0.25)
        with pytest.raises(ParameterError, match="replicas to be a positive number"):
            evaluate_offline(
                tmp_path / "d", c, tmp_path / "o", logits_columns=["s", "s"], replicas=[1, 0]
            )
        with pytest.raises(ParameterError, match="reserve 2 of the cluster's 2 CPUs"):
            evaluate_offline(tmp_path / "d", c, tmp_path / "o", logits_columns=["s", "s"])


# ---------------------------------------------------------------------------------- Ray Serve


def _serve_config(port: int, reduced: bool, thresholds: list[Any] | None = None) -> dict[str, Any]:
    """examples/ray_serve.yaml on a free loopback port, every replica on half a CPU."""
    doc = yaml.safe_load((ROOT / "examples" / "ray_serve.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["http_options"] = {"host": "127.0.0.1", "port": port}
    app = doc["applications"][0]
    app["args"] = {"demo": True, "reduced": reduced}
    for dep in app["deployments"]:
        dep["ray_actor_options"] = {"num_cpus": 0.5}
        dep["num_replicas"] = 1
        dep["health_check_period_s"] = 1
        if dep["name"] == "router" and thresholds is not None:
            dep["user_config"] = {"thresholds": thresholds}
    return doc


def _replica_names(deployment: str) -> set[str]:
    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"]
    }


def _in_process(served: Any, bodies: list[bytes], path: str) -> list[tuple[int, dict[str, Any]]]:
    """Answers of the single-process server (FastAPI app, lifespan running) to ``bodies``."""
    from cascadekit.serve import ServeConfig, create_app

    app = create_app(served, ServeConfig(stage_timeout=30))

    async def main() -> list[tuple[int, dict[str, Any]]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                out = []
                for b in bodies:
                    r = await client.post(path, content=b)
                    out.append((r.status_code, r.json()))
                out.append((200, (await client.get(f"/v2/models/{MODEL}")).json()))
                return out

    return asyncio.run(main())


class TestRayServe:
    @pytest.fixture(scope="class")
    def ray_app(self, ray_session: Any, zoo: Any) -> Any:
        from ray import serve

        from cascadekit.serve.ray import deploy_config

        port = _free_port()
        reduced = (
            zoo.recipe.key
            != __import__("cascadekit.data.zoo", fromlist=["default_recipe"]).default_recipe().key
        )
        deploy_config(_serve_config(port, reduced), timeout=600)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 120
            while client.get("/v2/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "the Ray Serve app never became ready"
                time.sleep(0.5)
            yield {"url": url, "port": port, "reduced": reduced, "client": client}
        serve.delete("cascadekit")

    def test_same_answers_as_the_in_process_server(
        self, ray_app: Any, zoo: Any, choice: Any
    ) -> None:
        from cascadekit.serve.demo import fashion_mnist_model

        images = zoo.images["test"]
        sizes = [1, 7, 64, 128, 200]
        starts = np.cumsum([0, *sizes[:-1]])
        bodies = [_body(images[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
        bodies.append(_body(images[:3], threshold="-inf"))  # a per-request override
        bad = json.dumps(
            {
                "inputs": [
                    {"name": "image", "shape": [1, 28, 28], "datatype": "FP64", "data": [0.0] * 784}
                ]
            }
        ).encode()
        bodies.append(bad)
        path = f"/v2/models/{MODEL}/infer"
        client = ray_app["client"]
        got = [(r.status_code, r.json()) for r in (client.post(path, content=b) for b in bodies)]
        got.append((200, client.get(f"/v2/models/{MODEL}").json()))
        served = fashion_mnist_model(zoo, choice=choice)
        want = _in_process(served, bodies, path)
        threshold = float(served.cascade.thresholds[0])  # type: ignore[index]
        n_compared = n_fallback = 0
        for (code_g, doc_g), (code_w, doc_w) in zip(got[:-2], want[:-2], strict=True):
            assert code_g == code_w == 200
            assert doc_g["parameters"] == doc_w["parameters"]
            g, w = _outputs(doc_g), _outputs(doc_w)
            # on a loaded machine the teacher may miss the 1 s stage timeout: those rows fall
            # back to the student's answer (stage 0, flagged); the others must match
            fb = g["fallback"]
            assert (g["stage"][fb] == 0).all()
            ok = ~_near(w["score"], threshold) & ~fb
            np.testing.assert_array_equal(g["label"][ok], w["label"][ok])
            np.testing.assert_array_equal(g["stage"][ok], w["stage"][ok])
            np.testing.assert_allclose(g["score"], w["score"], rtol=scores.SCORE_RTOL, atol=1e-5)
            n_compared += int(ok.sum())
            n_fallback += int(fb.sum())
        assert n_compared + n_fallback >= sum(sizes) - 1
        assert n_compared >= sum(sizes) // 2, f"{n_fallback} of {sum(sizes)} rows fell back"
        # every field of the routing engine, also every stage's score
        fields = ["label", "stage", "stage_scores", "fallback"]
        doc = json.loads(_body(images[:200]))
        doc["outputs"] = [{"name": n} for n in fields]
        body = json.dumps(doc).encode()
        g = _outputs(client.post(path, content=body).json())
        w = _outputs(_in_process(served, [body], path)[0][1])
        ok = ~_near(w["stage_scores"][:, 0], threshold) & ~g["fallback"]
        for name in ("label", "stage", "fallback"):
            np.testing.assert_array_equal(g[name][ok], w[name][ok])
        np.testing.assert_allclose(
            g["stage_scores"], w["stage_scores"], rtol=scores.SCORE_RTOL, atol=1e-5
        )
        # errors and metadata are the same documents
        assert got[-2] == want[-2] and got[-2][0] == 400
        assert got[-1] == want[-1]
        unknown = client.post("/v2/models/nope/infer", content=bodies[0])
        assert unknown.status_code == 404 and "Unknown model 'nope'" in unknown.json()["error"]

    def test_tritonclient_binary_tensors(self, ray_app: Any, zoo: Any) -> None:
        tc = pytest.importorskip("tritonclient.http")
        images = zoo.images["test"][:32]
        client = tc.InferenceServerClient(f"127.0.0.1:{ray_app['port']}")
        inp = tc.InferInput("image", list(images.shape), "UINT8")
        inp.set_data_from_numpy(images, binary_data=True)
        outs = [tc.InferRequestedOutput(n, binary_data=True) for n in ("label", "stage")]
        result = client.infer(MODEL, [inp], outputs=outs)
        doc = ray_app["client"].post(f"/v2/models/{MODEL}/infer", content=_body(images)).json()
        np.testing.assert_array_equal(result.as_numpy("label"), _outputs(doc)["label"])
        client.close()

    def test_threshold_changes_through_user_config_without_restarts(
        self, ray_app: Any, zoo: Any, choice: Any
    ) -> None:
        from cascadekit.serve.ray import deploy_config

        client = ray_app["client"]
        images = zoo.images["test"][:100]
        path = f"/v2/models/{MODEL}/infer"
        before = {d: _replica_names(d) for d in ("router", "student", "teacher")}
        assert all(len(v) == 1 for v in before.values())
        deploy_config(_serve_config(ray_app["port"], ray_app["reduced"], ["-inf"]))
        deadline = time.monotonic() + 60
        while True:
            doc = client.post(path, content=_body(images)).json()
            if doc["parameters"]["threshold"] == "-inf":
                break
            assert time.monotonic() < deadline, "reconfigure() never applied the threshold"
            time.sleep(0.2)
        assert (_outputs(doc)["stage"] == 0).all()  # -inf: the student answers everything
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert meta["parameters"]["threshold"] == "-inf"
        deploy_config(_serve_config(ray_app["port"], ray_app["reduced"], [choice.threshold]))
        while client.post(path, content=_body(images)).json()["parameters"]["threshold"] == "-inf":
            time.sleep(0.2)
        after = {d: _replica_names(d) for d in ("router", "student", "teacher")}
        assert after == before  # same replicas: reconfigured in place, not restarted

    def test_killing_the_teacher_replica_gives_fallbacks_not_failures(
        self, ray_app: Any, zoo: Any
    ) -> None:
        from ray import serve

        images = zoo.images["test"]
        path = f"/v2/models/{MODEL}/infer"
        url = ray_app["url"]
        (old,) = _replica_names("teacher")
        # every input goes to the teacher, so each request depends on it
        bodies = [_body(images[i * 16 : (i + 1) * 16], threshold="inf") for i in range(40)]
        stop = time.monotonic() + 12.0

        def load(worker: int) -> list[tuple[int, dict[str, Any]]]:
            out = []
            with httpx.Client(base_url=url, timeout=30) as c:
                i = worker
                while time.monotonic() < stop:
                    r = c.post(path, content=bodies[i % len(bodies)])
                    out.append((r.status_code, r.json()))
                    i += 3
            return out

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(load, w) for w in range(3)]
            time.sleep(2.0)
            ray.kill(ray.get_actor(old, namespace="serve"), no_restart=True)
            answers = [a for f in futures for a in f.result()]
        codes = [c for c, _ in answers]
        assert codes and set(codes) == {200}, f"failed requests: {sorted(set(codes))}"
        fallbacks = np.concatenate([_outputs(d)["fallback"] for _, d in answers])
        stages = np.concatenate([_outputs(d)["stage"] for _, d in answers])
        assert fallbacks.any(), "no input fell back while the teacher was down"
        assert (stages[fallbacks] == 0).all() and (stages[~fallbacks] == 1).all()
        # Ray restarts the teacher: a new replica answers, without fallbacks
        deadline = time.monotonic() + 120
        while True:
            new = _replica_names("teacher") - {old}
            status = serve.status().applications["cascadekit"].deployments["teacher"].status
            doc = ray_app["client"].post(path, content=bodies[0]).json()
            if new and str(status).endswith("HEALTHY") and not _outputs(doc)["fallback"].any():
                break
            assert time.monotonic() < deadline, f"the teacher did not come back ({status})"
            time.sleep(0.5)
        assert (_outputs(doc)["stage"] == 1).all()


def test_cli_rejects_an_unknown_backend() -> None:
    from typer.testing import CliRunner

    from cascadekit.cli import app

    result = CliRunner().invoke(app, ["serve", "--demo", "--backend", "spark"])
    assert result.exit_code != 0
    assert "Expected --backend local or ray; got 'spark'" in result.output
