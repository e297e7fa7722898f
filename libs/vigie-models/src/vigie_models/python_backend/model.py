"""Triton python-backend model that serves the ``model.onnx`` beside it with onnxruntime on the CPU.

Copied by ``python -m vigie_models build`` into ``<repo>/python/<model>/1/``. Generic: the tensor
names come from the model's config.pbtxt, which the build writes from the ONNX graph. It runs in
Triton's python stub, where ``triton_python_backend_utils`` is importable; nothing else imports it.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

INTRA_OP_THREADS_PARAMETER = "intra_op_thread_count"
DEFAULT_INTRA_OP_THREADS = 2


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        parameter = config.get("parameters", {}).get(INTRA_OP_THREADS_PARAMETER, {})
        threads = int(parameter.get("string_value", DEFAULT_INTRA_OP_THREADS))

        options = ort.SessionOptions()
        # Small machines: a fixed number of threads that sleep when idle, so that onnxruntime
        # does not fight the rest of the platform for the cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def _inputs(self, request):
        inputs = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            inputs[name] = tensor.as_numpy()
        return inputs

    def _error(self, message):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.model_name}: {message}"))

    def execute(self, requests):
        """One onnxruntime run per group of requests whose inputs can be stacked along the batch."""
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                inputs = self._inputs(request)
            except Exception as error:  # a bad request fails alone
                responses[index] = self._error(str(error))
                continue
            # Images of different sizes (CenterFace's dynamic inputs) cannot share a batch.
            key = tuple((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items())
            groups.setdefault(key, []).append((index, inputs))

        for members in groups.values():
            feed = {
                name: np.concatenate([inputs[name] for _, inputs in members]) if len(members) > 1 else array
                for name, array in members[0][1].items()
            }
            try:
                outputs = self.session.run(self.output_names, feed)
            except Exception as error:
                for index, _ in members:
                    responses[index] = self._error(f"inference failed: {error}")
                continue
            start = 0
            for index, inputs in members:
                stop = start + len(next(iter(inputs.values())))
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(output[start:stop]))
                    for name, output in zip(self.output_names, outputs, strict=True)
                ]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

    def finalize(self):
        self.session = None
