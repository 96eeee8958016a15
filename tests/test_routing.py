"""The routing engine (cascadekit.routing.RoutingState) and the protocol codec (cascadekit.oip)."""

from __future__ import annotations

import numpy as np
import pytest

from cascadekit import Cascade, Stage, oip
from cascadekit.errors import ParameterError, StageUnavailableError
from cascadekit.routing import RoutingState, stage_probabilities


def _three_stages() -> tuple[Cascade, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    outs = [rng.normal(scale=2.0, size=(200, 4)) for _ in range(3)]
    cascade = Cascade.from_outputs(outs, score="margin", thresholds=[1.5, 1.0], costs=[1, 2, 5])
    return cascade, outs


def _brute_force(outs: list[np.ndarray], ths: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Row by row: the first stage whose margin reaches its threshold answers."""
    stage, pred = [], []
    for i in range(outs[0].shape[0]):
        for k, z in enumerate(outs):
            top = np.sort(z[i])[::-1]
            if k == len(outs) - 1 or top[0] - top[1] >= ths[k]:
                stage.append(k)
                pred.append(int(np.argmax(z[i])))
                break
    return np.array(stage), np.array(pred)


def test_engine_matches_a_brute_force_router() -> None:
    cascade, outs = _three_stages()
    state = cascade.routing_state(200)
    rows = np.arange(200)
    for k in range(3):
        rows = state.update(k, rows, outs[k][rows])
    r = state.compute()
    stage, pred = _brute_force(outs, [1.5, 1.0])
    np.testing.assert_array_equal(r.stage, stage)
    np.testing.assert_array_equal(r.predictions, pred)
    assert np.isnan(r.stage_scores[:, 1]).sum() == (stage == 0).sum()
    assert not r.fallback.any() and state.decided.all()


def test_state_travels_as_columns_in_any_row_order() -> None:
    cascade, outs = _three_stages()
    whole = cascade.route()
    state = cascade.routing_state(200)
    state.update(0, np.arange(200), outs[0])
    # the second stage runs elsewhere on the carried columns, rows shuffled
    moved = RoutingState.from_columns(cascade.stages, [1.5, 1.0], state.to_columns())
    rows = moved.pending()[::-1]
    rows = moved.update(1, rows, outs[1][rows])
    moved.update(2, rows, outs[2][rows])
    r = moved.compute()
    for name in ("predictions", "stage", "stage_scores", "fallback"):
        np.testing.assert_array_equal(getattr(r, name), getattr(whole, name))


def test_fall_back_keeps_the_previous_stages_answer() -> None:
    cascade, outs = _three_stages()
    state = cascade.routing_state(200, probabilities=True)
    forward = state.update(0, np.arange(200), outs[0])
    to_last = state.update(1, forward, outs[1][forward])
    state.fall_back(2, to_last[::-1])
    r = state.compute()
    np.testing.assert_array_equal(r.fallback, np.isin(np.arange(200), to_last))
    np.testing.assert_array_equal(r.stage[to_last], 1)
    np.testing.assert_array_equal(r.predictions[to_last], np.argmax(outs[1][to_last], axis=1))
    proba = state.probabilities()
    assert proba is not None
    np.testing.assert_allclose(
        proba[to_last], stage_probabilities(cascade.stages[1], outs[1])[to_last]
    )


def test_predict_falls_back_like_the_engine() -> None:
    def down(x: np.ndarray) -> np.ndarray:
        raise StageUnavailableError("teacher unreachable")

    cascade, outs = _three_stages()
    models = [lambda x, z=z: z[x] for z in outs[:2]] + [down]
    live = Cascade([Stage(model=m, score="margin") for m in models], thresholds=cascade.thresholds)
    r = live.predict(np.arange(200))
    whole = cascade.route()
    np.testing.assert_array_equal(r.fallback, whole.stage == 2)
    np.testing.assert_array_equal(r.stage, np.minimum(whole.stage, 1))
    np.testing.assert_array_equal(r.stage_scores, whole.stage_scores)


def test_engine_errors_say_what_was_expected() -> None:
    cascade, outs = _three_stages()
    with pytest.raises(ParameterError, match=r"Expected 2 threshold\(s\) for 3 stages"):
        RoutingState(cascade.stages, [1.0], 5)
    state = cascade.routing_state(5)
    with pytest.raises(ParameterError, match=r"Expected row indices in \[0, 4\]; got 0 to 7"):
        state.update(0, [0, 7], outs[0][:2])
    with pytest.raises(ParameterError, match="for 3 rows; got 2"):
        state.update(0, [0, 1, 2], outs[0][:2])
    with pytest.raises(ParameterError, match=r"Expected a stage index in \[0, 2\]; got 3"):
        state.update(3, [0], outs[0][:1])
    with pytest.raises(ParameterError, match="the first stage has nothing to fall back to"):
        state.fall_back(0, [0])
    state = cascade.routing_state(200)
    forward = state.update(0, np.arange(200), outs[0])
    other = np.setdiff1d(np.arange(200), forward)
    assert other.size
    with pytest.raises(ParameterError, match="were not forwarded to stage 1 by stage 0"):
        state.fall_back(1, other[:1])


def test_oip_request_round_trip_json_and_binary() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for binary in (False, True):
        body, n = oip.encode_infer_request(
            [oip.OutputTensor("x", x)], outputs=["label"], parameters={"a": 1}, binary=binary
        )
        req = oip.parse_infer_request(body, n)
        np.testing.assert_array_equal(req.inputs[0].data, x)
        assert req.parameters == {"a": 1} and [o.name for o in req.outputs or []] == ["label"]
        assert (n is not None) == binary


def test_oip_decode_tensor() -> None:
    doc = {"name": "s", "datatype": "FP64", "shape": [2, 2], "data": [1.0, None, 3.0, 4.0]}
    out = oip.decode_tensor(doc)
    assert out.shape == (2, 2) and np.isnan(out[0, 1])
    raw = np.array([1, 2], dtype="<i8").tobytes()
    entry = {"name": "l", "datatype": "INT64", "shape": [2]}
    np.testing.assert_array_equal(oip.decode_tensor(entry, raw), [1, 2])
    with pytest.raises(oip.BadRequestError, match="datatype of tensor 'q' to be one of"):
        oip.decode_tensor({"name": "q", "datatype": "FP8", "shape": [1], "data": [1.0]})
    with pytest.raises(oip.BadRequestError, match="needs 16 bytes"):
        oip.decode_tensor({"name": "l", "datatype": "INT64", "shape": [2]}, raw[:8])


def test_a_decision_made_per_batch_gives_the_same_route() -> None:
    """The server scores each batch once and hands every request its rows' decision."""
    cascade, outs = _three_stages()
    plain, fed = cascade.routing_state(200), cascade.routing_state(200)
    rows_a = rows_b = np.arange(200)
    for k in range(3):
        rows_a = plain.update(k, rows_a, outs[k][rows_a])
        z = outs[k][rows_b]
        d = cascade.stages[k].decide(z, -123.0) if k < 2 else None  # made at another threshold
        rows_b = fed.update(k, rows_b, z, decision=d)
    a, b = plain.compute(), fed.compute()
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.stage, b.stage)
    np.testing.assert_array_equal(a.stage_scores, b.stage_scores)


def test_a_decision_for_other_rows_or_an_other_class_stage_is_refused() -> None:
    cascade, outs = _three_stages()
    state = cascade.routing_state(200)
    d = cascade.stages[0].decide(outs[0][:10], 0.0)
    with pytest.raises(ParameterError, match="Expected a decision of stage .* for 200 rows"):
        state.update(0, np.arange(200), outs[0], decision=d)
    gated = Cascade.from_outputs(outs[:2], score="margin", thresholds=[1.0])
    gated.stages[0].other_class = 3
    state = gated.routing_state(10)
    with pytest.raises(ParameterError, match="without other_class; got 10 scores and other_cl"):
        state.update(0, np.arange(10), outs[0][:10], decision=d)
