"""Shared fixtures of the server tests: the real Fashion-MNIST zoo, apps and clients.

The zoo is the cached default recipe when it is in the cache (loading takes a few seconds);
otherwise the reduced recipe, which trains in about a minute, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))  # serve_helpers

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from cascadekit.data import DEFAULT_FASHION_MNIST_DIR
from cascadekit.serve.launch import free_port

if not (DEFAULT_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
    pytest.skip("needs `apt-get install -y dataset-fashion-mnist`", allow_module_level=True)


@pytest.fixture(scope="session")
def zoo() -> Any:
    from cascadekit.data.cache import cache_root
    from cascadekit.data.zoo import default_recipe, load_fashion_mnist_zoo

    full = cache_root() / "fashion_mnist_zoo" / default_recipe().key / "meta.json"
    return load_fashion_mnist_zoo(reduced=not full.is_file())


@pytest.fixture(scope="session")
def choice(zoo: Any) -> Any:
    from cascadekit.serve.demo import choose_router

    return choose_router(zoo)


@pytest.fixture(scope="session")
def test_images(zoo: Any) -> tuple[np.ndarray, np.ndarray]:
    return zoo.images["test"], zoo.labels["test"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_served(zoo: Any, choice: Any, **kw: Any) -> Any:
    from cascadekit.serve.demo import fashion_mnist_model

    return fashion_mnist_model(zoo, choice=choice, **kw)


@contextlib.asynccontextmanager
async def app_client(app: Any) -> AsyncIterator[Any]:
    """An httpx client talking to ``app`` in-process, with its lifespan running."""
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@contextlib.contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server on a loopback ephemeral port (in a thread)."""
    import uvicorn

    port = free_port()
    # keep-alive longer than the client's (httpx: 5 s), as ServeConfig does, so the server never
    # closes an idle connection at the moment a client reuses it (a lost request)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
