"""The python-backend model.py, run outside Triton with a stand-in for ``triton_python_backend_utils``.

The integration test in vigie-embedded runs it in the real tritonserver; this one covers batching and
errors in milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper

from vigie_models.triton_repository import python_backend_model_source


class FakeTensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array


class FakeTritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class FakeResponse:
    def __init__(
        self, output_tensors: list[FakeTensor] | None = None, error: FakeTritonError | None = None
    ) -> None:
        self.outputs = {tensor.name(): tensor.as_numpy() for tensor in output_tensors or []}
        self.error = error


class FakeRequest:
    def __init__(self, **inputs: npt.NDArray[Any]) -> None:
        self.inputs = inputs


def _get_input_tensor_by_name(request: FakeRequest, name: str) -> FakeTensor | None:
    return FakeTensor(name, request.inputs[name]) if name in request.inputs else None


def _tiny_model() -> onnx.ModelProto:
    """doubled = x * 2 and shifted = x + 1 on float32 [batch, 2, n]."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Add", ["x", "one"], ["shifted"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, "n"])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["batch", 2, "n"]),
            helper.make_tensor_value_info("shifted", TensorProto.FLOAT, ["batch", 2, "n"]),
        ],
        [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class CountingSession:
    def __init__(self, session: Any) -> None:
        self._session = session
        self.batches: list[int] = []

    def run(self, names: list[str], feed: dict[str, npt.NDArray[Any]]) -> Any:
        self.batches.append(len(feed["x"]))
        return self._session.run(names, feed)


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor = FakeTensor  # type: ignore[attr-defined]
    fake.TritonError = FakeTritonError  # type: ignore[attr-defined]
    fake.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    fake.get_input_tensor_by_name = _get_input_tensor_by_name  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(_tiny_model().SerializeToString())
    (tmp_path / "1" / "model.py").write_bytes(python_backend_model_source())
    spec = importlib.util.spec_from_file_location("vigie_test_triton_model", tmp_path / "1" / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    instance = module.TritonPythonModel()
    config = {
        "input": [{"name": "x"}],
        "output": [{"name": "doubled"}, {"name": "shifted"}],
        "parameters": {"intra_op_thread_count": {"string_value": "1"}},
    }
    instance.initialize(
        {
            "model_config": json.dumps(config),
            "model_name": "tiny",
            "model_repository": str(tmp_path),
            "model_version": "1",
        }
    )
    instance.session = CountingSession(instance.session)
    yield instance
    instance.finalize()


def test_requests_of_the_same_shape_share_one_run(model: Any) -> None:
    rng = np.random.default_rng(0)
    small = [rng.normal(size=(1, 2, 3)).astype(np.float32) for _ in range(2)]
    pair = rng.normal(size=(2, 2, 3)).astype(np.float32)
    wide = rng.normal(size=(1, 2, 5)).astype(np.float32)
    responses = model.execute(
        [FakeRequest(x=small[0]), FakeRequest(x=wide), FakeRequest(x=pair), FakeRequest(x=small[1])]
    )

    assert sorted(model.session.batches) == [1, 4]  # the three 2x3 requests stacked, the 2x5 one alone
    for response, x in zip(responses, [small[0], wide, pair, small[1]], strict=True):
        assert response.error is None
        np.testing.assert_array_equal(response.outputs["doubled"], x * 2)
        np.testing.assert_array_equal(response.outputs["shifted"], x + 1)


def test_a_bad_request_fails_alone(model: Any) -> None:
    good = np.ones((1, 2, 3), np.float32)
    responses = model.execute(
        [FakeRequest(y=good), FakeRequest(x=good), FakeRequest(x=np.ones((1, 2, 3), np.int64))]
    )

    assert responses[0].error.message() == "tiny: missing input 'x'"
    assert responses[1].error is None
    np.testing.assert_array_equal(responses[1].outputs["doubled"], good * 2)
    assert responses[2].error.message().startswith("tiny: inference failed:")
