"""The Open Inference Protocol over gRPC: NVIDIA's ``tritonclient.grpc``, unchanged, against a
real server that serves REST and gRPC from one service (same answers, errors, metrics)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from conftest import make_served, uvicorn_thread
from serve_helpers import FaultyModel, check_correct_or_flagged, reference

from cascadekit.serve import BatchPolicy, ServeConfig, create_app

grpc = pytest.importorskip("grpc")
grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from cascadekit.oip import BadRequestError  # noqa: E402
from cascadekit.oip.proto import decode_infer_request, message  # noqa: E402
from cascadekit.serve.grpc import add_grpc  # noqa: E402

MODEL = "fashion-mnist"
OUTPUTS = ("label", "score", "stage", "fallback", "probabilities", "stage_scores")


@pytest.fixture(scope="module")
def server(zoo: Any, choice: Any) -> Iterator[dict[str, Any]]:
    """One uvicorn server answering REST and gRPC (``add_grpc``) from one service."""
    served = make_served(zoo, choice)
    app = create_app(served)
    add_grpc(app, port=0)
    with uvicorn_thread(app) as url:
        yield {
            "http": url,
            "grpc": f"127.0.0.1:{app.state.grpc_port}",
            "served": served,
            "service": app.state.service,
        }


@pytest.fixture
def client(server: dict[str, Any]) -> Iterator[Any]:
    c = grpcclient.InferenceServerClient(server["grpc"])
    try:
        yield c
    finally:
        c.close()


def _infer(client: Any, images: np.ndarray, outputs: tuple[str, ...] = (), **kw: Any) -> Any:
    mod = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    inp = mod.InferInput(
        "image", list(images.shape), "UINT8" if images.dtype == np.uint8 else "FP32"
    )
    inp.set_data_from_numpy(images)
    outs = [mod.InferRequestedOutput(n) for n in outputs] or None
    return client.infer(MODEL, [inp], outputs=outs, **kw)


def _count(service: Any, metric: str, **labels: str) -> float:
    return service.metrics.registry.get_sample_value(metric, labels) or 0.0


def _fields(desc: Any) -> dict[str, tuple[Any, ...]]:
    return {
        f.name: (f.number, f.type, f.is_repeated, f.message_type and f.message_type.full_name)
        for f in desc.fields
    }


def test_proto_matches_tritons() -> None:
    """Every message, field name, number and type, and every RPC of our .proto is the same as
    in tritonclient's copy of the protocol (what makes the wire format interoperate)."""
    from tritonclient.grpc import service_pb2

    ours = message("ModelInferRequest").DESCRIPTOR.file
    theirs = service_pb2.DESCRIPTOR
    assert ours.package == theirs.package == "inference"

    def same(a: Any, b: Any) -> None:
        assert _fields(a) == _fields(b), a.full_name
        for nested in a.nested_types:
            same(nested, b.nested_types_by_name[nested.name])

    for name, desc in ours.message_types_by_name.items():
        same(desc, theirs.message_types_by_name[name])
    service = ours.services_by_name["GRPCInferenceService"]
    triton = theirs.services_by_name["GRPCInferenceService"]
    assert len(service.methods) == 6
    for m in service.methods:
        t = triton.methods_by_name[m.name]
        assert (m.input_type.full_name, m.output_type.full_name) == (
            t.input_type.full_name,
            t.output_type.full_name,
        )


def test_descriptor_is_the_compiled_proto() -> None:
    """Every field written in the .proto is in the checked-in descriptor, with its number, and
    nothing else is (run scripts/gen_grpc_descriptor.py after editing the .proto)."""
    from pathlib import Path

    import cascadekit.oip

    text = (Path(cascadekit.oip.__file__).parent / "grpc_predict_v2.proto").read_text()
    text = re.sub(r"//[^\n]*", "", text)
    written = set(re.findall(r"(?:map<\w+, \w+>|\w+) (\w+) = (\d+);", text))
    compiled: set[tuple[str, str]] = set()

    def walk(desc: Any) -> None:
        compiled.update((f.name, str(f.number)) for f in desc.fields)
        for nested in desc.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested)

    for desc in message("ModelInferRequest").DESCRIPTOR.file.message_types_by_name.values():
        walk(desc)
    assert written == compiled
    rpcs = set(re.findall(r"rpc (\w+)\((\w+)\) returns \((\w+)\)", text))
    service = message("ModelInferRequest").DESCRIPTOR.file.services_by_name["GRPCInferenceService"]
    assert rpcs == {(m.name, m.input_type.name, m.output_type.name) for m in service.methods}


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    meta = client.get_server_metadata()
    assert meta.name == "cascadekit" and "binary_tensor_data" in meta.extensions
    model = client.get_model_metadata(MODEL)
    assert (model.name, list(model.versions), model.platform) == (MODEL, ["1"], "cascadekit")
    image = model.inputs[0]
    assert (image.name, image.datatype, list(image.shape)) == ("image", "UINT8", [-1, 28, 28])
    assert [o.name for o in model.outputs] == list(OUTPUTS)
    with pytest.raises(InferenceServerException, match="Unknown model 'nope'") as exc:
        client.get_model_metadata("nope")
    assert exc.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="has no version '7'"):
        client.is_model_ready(MODEL, "7")


@pytest.mark.parametrize("dtype", ["UINT8", "FP32"])
def test_infer_answers_as_rest(
    server: dict[str, Any], client: Any, test_images: Any, dtype: str
) -> None:
    """raw_input_contents in, raw_output_contents out: the same answers as REST."""
    images, labels = test_images[0][:100], test_images[1][:100]
    if dtype == "FP32":
        images = images.astype(np.float32)
    served = server["served"]
    result = _infer(client, images, OUTPUTS, request_id="r-7")
    got = {n: result.as_numpy(n) for n in OUTPUTS}
    assert got["label"].dtype == np.int64 and got["stage"].dtype == np.int32
    assert got["fallback"].dtype == np.bool_ and got["stage_scores"].dtype == np.float64
    assert got["probabilities"].shape == (100, 10)
    th = served.cascade.thresholds[0]
    check_correct_or_flagged(
        got["label"],
        got["stage"],
        got["fallback"],
        got["score"],
        reference(served, images),
        np.arange(100),
        th,
    )
    assert np.mean(got["label"] == labels) > 0.85  # real Fashion-MNIST images, right labels
    response = result.get_response()
    assert response.id == "r-7" and response.model_version == "1"
    assert response.parameters["threshold"].double_param == th
    rest = httpclient.InferenceServerClient(server["http"])
    try:
        want = _infer(rest, images, OUTPUTS)
    finally:
        rest.close()
    for n in ("label", "stage", "fallback"):
        np.testing.assert_array_equal(got[n], want.as_numpy(n), err_msg=n)
    for n in ("score", "stage_scores", "probabilities"):
        np.testing.assert_allclose(got[n], want.as_numpy(n), rtol=1e-5, atol=1e-6, err_msg=n)
    # default outputs, as over REST: label, score, stage, fallback
    default = _infer(client, images[:3]).get_response()
    assert [o.name for o in default.outputs] == ["label", "score", "stage", "fallback"]


def test_parameters_threshold_and_timeout(
    server: dict[str, Any], client: Any, test_images: Any
) -> None:
    images = test_images[0][:16]
    keep = _infer(client, images, ("stage",), parameters={"threshold": -1e9}, timeout=5_000_000)
    assert np.all(keep.as_numpy("stage") == 0)
    assert keep.get_response().parameters["threshold"].double_param == -1e9
    send = _infer(client, images, ("stage",), parameters={"threshold": "inf"})
    assert np.all(send.as_numpy("stage") == 1)
    with pytest.raises(InferenceServerException, match="threshold") as exc:
        _infer(client, images, parameters={"threshold": "abc"})
    assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_contents_give_the_raw_answers(server: dict[str, Any], test_images: Any) -> None:
    """The typed contents field (what other v2 clients send) decodes to the same tensor."""
    images = test_images[0][:20]
    request = message("ModelInferRequest")(model_name=MODEL)
    request.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
    request.inputs[0].contents.uint_contents.extend(images.reshape(-1).tolist())
    request.outputs.add(name="label")
    with grpc.insecure_channel(server["grpc"]) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=message("ModelInferRequest").SerializeToString,
            response_deserializer=message("ModelInferResponse").FromString,
        )
        response = call(request, timeout=30)
        label = np.frombuffer(response.raw_output_contents[0], "<i8")
        request.inputs[0].contents.uint_contents[0] = 256  # out of UINT8's range
        with pytest.raises(grpc.RpcError) as exc:
            call(request, timeout=30)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected the data of UINT8 input 'image' to lie in [0, 255]" in exc.value.details()
    rest = httpclient.InferenceServerClient(server["http"])
    try:
        np.testing.assert_array_equal(label, _infer(rest, images, ("label",)).as_numpy("label"))
    finally:
        rest.close()


@pytest.mark.parametrize(
    ("case", "status", "match"),
    [
        (
            "shape",
            "INVALID_ARGUMENT",
            r"Input 'image' expects shape \[-1, 28, 28\].*got \[2, 784\]",
        ),
        ("dtype", "INVALID_ARGUMENT", r"expects datatype UINT8 or FP32; got INT32"),
        ("model", "NOT_FOUND", r"Unknown model 'nope'; this server serves 'fashion-mnist'"),
        ("output", "INVALID_ARGUMENT", r"Unknown output 'logits' requested; model 'fashion-mnist'"),
        ("input", "INVALID_ARGUMENT", r"takes one input, 'image'.*got input\(s\) 'image', 'x'"),
        ("nan", "INVALID_ARGUMENT", r"Input 'image' holds 1 non-finite value"),
        ("batch", "INVALID_ARGUMENT", r"Expected at most 4096 inputs per request; got 4097"),
    ],
)
def test_bad_requests_get_status_and_message(
    server: dict[str, Any], client: Any, case: str, status: str, match: str
) -> None:
    service = server["service"]
    name = "nope" if case == "model" else MODEL
    metric = "_unknown" if case == "model" else MODEL
    code = "404" if case == "model" else "400"
    before = _count(service, "cascadekit_requests_total", model=metric, code=code)
    x = np.zeros((2, 28, 28), np.uint8)
    inputs = []
    outputs = None
    if case == "shape":
        x = x.reshape(2, 784)
    elif case == "dtype":
        x = x.astype(np.int32)
    elif case == "nan":
        x = x.astype(np.float32)
        x[1, 2, 3] = np.nan
    elif case == "output":
        outputs = [grpcclient.InferRequestedOutput("logits")]
    elif case == "input":
        extra = grpcclient.InferInput("x", [1], "FP32")
        extra.set_data_from_numpy(np.zeros(1, np.float32))
        inputs.append(extra)
    elif case == "batch":  # refused before its data is decoded
        x = np.zeros((server["service"].config.max_request_inputs + 1, 28, 28), np.uint8)
    datatype = {np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32"}.get(x.dtype, "FP32")
    inp = grpcclient.InferInput("image", list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=match) as exc:
        client.infer(name, [inp, *inputs], outputs=outputs)
    assert exc.value.status() == f"StatusCode.{status}"
    assert _count(service, "cascadekit_requests_total", model=metric, code=code) == before + 1


def test_a_bad_request_never_hurts_a_good_one(server: dict[str, Any], test_images: Any) -> None:
    images = test_images[0][:32]
    served = server["served"]
    ref = reference(served, images)
    service = server["service"]
    ok_before = _count(service, "cascadekit_requests_total", model=MODEL, code="200")
    timed_before = _count(service, "cascadekit_request_seconds_count", model=MODEL)
    bad_before = _count(
        service, "cascadekit_request_failures_total", model=MODEL, reason="bad_request"
    )

    def good(i: int) -> np.ndarray:
        c = grpcclient.InferenceServerClient(server["grpc"])
        try:
            r = _infer(c, images[i : i + 4], ("label", "fallback"))
            assert not r.as_numpy("fallback").any()
            return np.asarray(r.as_numpy("label"))
        finally:
            c.close()

    def bad(i: int) -> str:
        c = grpcclient.InferenceServerClient(server["grpc"])
        try:
            x = np.full((1, 28, 28), np.inf if i % 2 else np.nan, np.float32)
            inp = grpcclient.InferInput("image", [1, 28, 28], "FP32")
            inp.set_data_from_numpy(x)
            with pytest.raises(InferenceServerException) as exc:
                c.infer(MODEL, [inp])
            return str(exc.value.status())
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(good, i) for i in range(0, 32, 4)]
        bads = [pool.submit(bad, i) for i in range(8)]
        labels = np.concatenate([f.result(timeout=60) for f in goods])
        statuses = [f.result(timeout=60) for f in bads]
    assert statuses == ["StatusCode.INVALID_ARGUMENT"] * 8
    # near-threshold inputs may route either way in another batch: check_correct_or_flagged
    # allows that; here the labels of inputs away from the threshold must match the offline ones
    far = np.abs(ref["score"] - served.cascade.thresholds[0]) > 1e-4
    np.testing.assert_array_equal(labels[far], ref["label"][far])
    assert _count(service, "cascadekit_requests_total", model=MODEL, code="200") == ok_before + 8
    bad_now = _count(
        service, "cascadekit_request_failures_total", model=MODEL, reason="bad_request"
    )
    assert bad_now == bad_before + 8
    assert _count(service, "cascadekit_request_seconds_count", model=MODEL) == timed_before + 16


def test_decode_errors_say_what_to_send() -> None:
    """The codec's own checks (tritonclient never sends these, other clients may)."""
    request = message("ModelInferRequest")
    with pytest.raises(BadRequestError, match="Expected 'inputs' to hold at least one tensor"):
        decode_infer_request(request(model_name="m"))
    msg = request(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[3])
    msg.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(BadRequestError, match=r"shape \[3\], so 3 element\(s\), but its contents"):
        decode_infer_request(msg)
    msg.inputs[0].contents.int_contents.append(1)
    with pytest.raises(BadRequestError, match="in contents.fp32_contents; got contents"):
        decode_infer_request(msg)
    msg.raw_input_contents.append(np.zeros(3, "<f4").tobytes())
    with pytest.raises(BadRequestError, match="has both contents and raw_input_contents"):
        decode_infer_request(msg)
    msg.inputs[0].ClearField("contents")
    msg.raw_input_contents[0] = b"\0" * 8
    with pytest.raises(BadRequestError, match=r"needs 12 bytes of binary data \(3 x 4\); got 8"):
        decode_infer_request(msg)
    msg.raw_input_contents.append(b"")
    with pytest.raises(
        BadRequestError, match=r"one raw_input_contents entry per input \(1\); got 2"
    ):
        decode_infer_request(msg)
    half = request(model_name="m")
    half.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(BadRequestError, match="FP16, which has no typed contents field"):
        decode_infer_request(half)
    half.inputs[0].datatype = "FP8"
    with pytest.raises(BadRequestError, match="'datatype' of input 'x' to be one of BOOL"):
        decode_infer_request(half)
    half.inputs[0].datatype = "FP16"
    half.inputs[0].shape[0] = -2
    with pytest.raises(BadRequestError, match="list of non-negative 64-bit integers; got"):
        decode_infer_request(half)
    half.inputs[0].shape[0] = 1
    half.raw_input_contents.append(np.float16([1.5]).tobytes())
    half.parameters["threshold"].Clear()
    with pytest.raises(BadRequestError, match="Parameter 'threshold' in the request parameters"):
        decode_infer_request(half)
    del half.parameters["threshold"]
    assert decode_infer_request(half).inputs[0].data.tolist() == [1.5]


def test_overload_deadline_and_drain(zoo: Any, choice: Any, test_images: Any) -> None:
    """503 -> UNAVAILABLE with a retry-after trailer, 504 -> DEADLINE_EXCEEDED; when the app
    stops, the gRPC server refuses new calls and lets the one in flight finish."""
    served = make_served(zoo, choice)
    slow = FaultyModel(served.cascade.stages[0].model, delay=1.0)
    served.cascade.stages[0].model = slow
    config = ServeConfig(
        batching=BatchPolicy(max_batch_size=1, max_wait=0, max_queue=1), drain_timeout=30
    )
    app = create_app(served, config)
    add_grpc(app, port=0)
    images = test_images[0][:2]

    def request(**params: Any) -> Any:
        msg = message("ModelInferRequest")(model_name=MODEL)
        msg.inputs.add(name="image", datatype="UINT8", shape=list(images.shape))
        msg.raw_input_contents.append(images.tobytes())
        msg.parameters["timeout"].int64_param = params.get("timeout", 60_000_000)
        return msg

    async def main() -> None:
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.state.grpc_port}")
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=message("ModelInferRequest").SerializeToString,
            response_deserializer=message("ModelInferResponse").FromString,
        )
        try:
            slow.mode = "slow"
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(request(timeout=50_000))
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "passed before the first stage 'student' answered" in exc.value.details()
            # one call runs, one waits: the queue is full for the others
            calls = [asyncio.ensure_future(call(request())) for _ in range(4)]
            done = await asyncio.gather(*calls, return_exceptions=True)
            refused = [e for e in done if isinstance(e, grpc.aio.AioRpcError)]
            assert refused and len(refused) < 4
            assert {e.code() for e in refused} == {grpc.StatusCode.UNAVAILABLE}
            assert "Stage 'student' is overloaded" in refused[0].details()
            assert ("retry-after", "1") in tuple(refused[0].trailing_metadata())
            # drain: the call in flight finishes, a new one is refused
            before = slow.calls
            inflight = asyncio.ensure_future(call(request()))
            while slow.calls == before:
                await asyncio.sleep(0.01)
            stopping = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0.2)  # let the shutdown start (the student takes 1 s)
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await call(request(), timeout=30)
            assert late.value.code() == grpc.StatusCode.UNAVAILABLE
            response = await inflight
            assert [o.name for o in response.outputs] == ["label", "score", "stage", "fallback"]
            await stopping
        finally:
            await channel.close()

    asyncio.run(main())


def test_cli_serve_grpc_port(test_images: Any, zoo: Any) -> None:
    """`cascadekit serve --demo --port 0 --grpc-port 0` serves both protocols; SIGTERM drains."""
    from cascadekit.data.zoo import default_recipe

    reduced = [] if zoo.recipe.key == default_recipe().key else ["--reduced"]
    cmd = [sys.executable, "-m", "cascadekit.cli", "serve", "--demo", *reduced]
    proc = subprocess.Popen(
        [*cmd, "--port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    try:
        address = None
        deadline = time.monotonic() + 120
        assert proc.stderr is not None
        while address is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}")
            m = re.search(r"gRPC server running on (127\.0\.0\.1:\d+)", line)
            address = m.group(1) if m else None
        assert address is not None
        c = grpcclient.InferenceServerClient(address)
        try:
            assert c.is_server_ready()
            label = _infer(c, test_images[0][:64], ("label",)).as_numpy("label")
            assert np.mean(label == test_images[1][:64]) > 0.85
        finally:
            c.close()
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode in (0, -15)
        assert "Application shutdown complete" in rest


def test_cli_grpc_port_errors() -> None:
    from typer.testing import CliRunner

    from cascadekit.cli import app

    res = CliRunner().invoke(app, ["serve", "--demo", "--backend", "ray", "--grpc-port", "1"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--grpc-port goes with --backend local" in " ".join(res.output.split())


def test_a_port_in_use_is_a_clear_error() -> None:
    from cascadekit import Cascade
    from cascadekit.errors import ParameterError
    from cascadekit.oip import TensorSpec
    from cascadekit.serve import InferenceService, ServedModel
    from cascadekit.serve.grpc import start_grpc_server

    cascade = Cascade.from_models([lambda x: x, lambda x: x], thresholds=[0.5])
    service = InferenceService(ServedModel("toy", cascade, TensorSpec("x", ("FP32",), (-1, 2))))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ParameterError, match=rf"Could not bind the gRPC server to 127.0.0.1:{port}"
        ):
            asyncio.run(start_grpc_server(service, port))


def test_threshold_override_token_in_metadata() -> None:
    """threshold_override="token": parameters.threshold needs the admin token, sent as gRPC
    metadata; without it the call is PERMISSION_DENIED with the REST message."""
    from cascadekit import Cascade
    from cascadekit.oip import TensorSpec

    student = lambda x: np.stack([x[:, 0], -x[:, 0]], axis=1)  # noqa: E731
    teacher = lambda x: np.stack([x[:, 0] - 1, 1 - x[:, 0]], axis=1)  # noqa: E731
    cascade = Cascade.from_models([student, teacher], score="margin", thresholds=[1.0])
    config = ServeConfig(threshold_override="token", admin_token="s3cret-token")
    app = create_app(cascade, config, name="toy", input_spec=TensorSpec("x", ("FP32",), (-1, 1)))
    add_grpc(app, port=0)
    request = message("ModelInferRequest")(model_name="toy")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    request.raw_input_contents.append(np.array([[3.0], [0.2]], "<f4").tobytes())
    request.parameters["threshold"].double_param = -1e9  # every input stays on the student

    async def main() -> None:
        async with app.router.lifespan_context(app):
            address = f"127.0.0.1:{app.state.grpc_port}"
            async with grpc.aio.insecure_channel(address) as channel:
                call = channel.unary_unary(
                    "/inference.GRPCInferenceService/ModelInfer",
                    request_serializer=message("ModelInferRequest").SerializeToString,
                    response_deserializer=message("ModelInferResponse").FromString,
                )
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await call(request)
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "applies parameters.threshold only with the admin token" in (
                    exc.value.details() or ""
                )
                auth = (("authorization", "Bearer s3cret-token"),)
                response = await call(request, metadata=auth)
                stage = np.frombuffer(response.raw_output_contents[2], "<i4")
                assert stage.tolist() == [0, 0]

    asyncio.run(main())
