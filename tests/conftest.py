"""Shared fixtures. Offline by construction: the hub is never contacted from tests."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("CRS_BENCH_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set CRS_BENCH_DATA to run this test)")
    return path


@pytest.fixture(scope="session")
def plugins():
    """The built-in plugins only: tests must not depend on what else is installed."""
    from harness.plugin_manager import load_plugins

    return load_plugins(autoload=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny networks: a second thread does not help them, and on a shared
    2-core machine the threads' barriers make every small op wait for a descheduled sibling."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synthetic():
    from plugins.synthetic import build_synthetic

    return build_synthetic()


@pytest.fixture
def run_bench(tmp_path, monkeypatch, capsys):
    """Call `bench` in-process with isolated results and cache directories; returns (code, out, err)."""
    from harness.cli import main

    monkeypatch.setenv("CRS_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(*args: str, results: Path | None = None) -> tuple[int, str, str]:
        argv = list(args)
        if argv and argv[0] in ("run", "leaderboard", "plugins") and "--cache-dir" not in argv:
            argv[1:1] = ["--results-dir", str(results or tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def serve_locally():
    """``serve_locally(handler_class) -> base URL`` of an HTTP server on 127.0.0.1 (a free port) answering with
    the handler, e.g. a fake OpenAI-compatible endpoint; every server is shut down after the test."""
    import threading
    from http.server import HTTPServer

    servers = []

    def serve(handler: type) -> str:
        httpd = HTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    yield serve
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def pytest_collection_modifyitems(config, items):
    """`cuda`-marked tests run only where CUDA exists; torch is imported only when some test is marked."""
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (benchmarks/gpu_check.sh runs these where one exists)")
    for item in marked:
        item.add_marker(skip)
