"""pytest plugin for the order-dependent GPU failure of issue 22: the reader test failing with an illegal
memory access only after `test_cuda_graph_decode_equals_eager_decode` ran in the same process.

Each mode changes one thing between the two tests, to see which one removes the failure:

    keepalive   every CudaGraphDecoder is kept alive (its graph and private memory pool never released)
    clearblas   torch._C._cuda_clearCublasWorkspaces() once the graph test is done
    gcsync      gc.collect(), torch.cuda.synchronize(), torch.cuda.empty_cache() once it is done
    synccheck   a synchronize after the graph test and before the next one, printing where an error shows

    PYTHONPATH=bench/kernels:. python3 -m pytest -p graph_order_diag --graph-diag keepalive,synccheck \
        tests/model/test_model_gpu.py::test_cuda_graph_decode_equals_eager_decode \
        tests/rag/test_rag_reader_mode.py::test_reader_on_cuda_cites_truthfully
"""

from __future__ import annotations

import gc

import pytest
import torch

_KEEP: list = []


def pytest_addoption(parser) -> None:
    parser.addoption("--graph-diag", default="", help="comma-separated modes (module docstring)")


def _modes(config) -> set[str]:
    return {m for m in config.getoption("--graph-diag").split(",") if m}


def pytest_configure(config) -> None:
    if "keepalive" in _modes(config):
        from gdn2_model import streaming

        init = streaming.CudaGraphDecoder.__init__

        def keep(self, *args, **kwargs):
            init(self, *args, **kwargs)
            _KEEP.append(self)

        streaming.CudaGraphDecoder.__init__ = keep


def _sync(where: str) -> None:
    try:
        torch.cuda.synchronize()
        print(f"[graph-diag] {where}: synchronize ok", flush=True)
    except Exception as err:  # noqa: BLE001 - the point is to print where the error shows
        print(f"[graph-diag] {where}: {err}", flush=True)
        raise


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    modes = _modes(item.config)
    if "cuda_graph" not in item.name:
        return
    if "synccheck" in modes:
        _sync("after the graph test")
    if "clearblas" in modes:
        gc.collect()
        torch._C._cuda_clearCublasWorkspaces()
    if "gcsync" in modes:
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    if "synccheck" in modes:
        gc.collect()
        _sync("after gc of the graph test's objects")


def pytest_runtest_setup(item) -> None:
    if "synccheck" in _modes(item.config) and "cuda_graph" not in item.name:
        _sync(f"before {item.name}")
