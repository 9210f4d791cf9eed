"""A Triton python-backend model serving the tiny ONNX network through onnxruntime.

Config parameters (all optional, string values):
- `journal`: a file to which each instance appends `loaded NAME KIND DEVICE`
  and `unloaded NAME KIND DEVICE`, so that tests see the order in which
  Triton really loaded and unloaded instances;
- `fail_load`: raise this message from initialize (a broken model);
- `load_delay_s`: take this long to load (a slow model, for load timeouts).
"""
import json
import os
import time

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.what = "{} {} {}".format(
            args["model_name"], args["model_instance_kind"], args["model_instance_device_id"]
        )
        self.journal = params.get("journal", "")
        if params.get("fail_load"):
            raise RuntimeError(params["fail_load"])
        delay = float(params.get("load_delay_s") or 0)
        if delay > 0:
            time.sleep(delay)
        here = os.path.join(args["model_repository"], args["model_version"])
        self.session = ort.InferenceSession(
            os.path.join(here, "model.onnx"), providers=["CPUExecutionProvider"]
        )
        self._note("loaded")

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            (y,) = self.session.run(None, {"input": x})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", y)]))
        return responses

    def finalize(self):
        self._note("unloaded")

    def _note(self, event):
        if self.journal:
            with open(self.journal, "a") as f:
                f.write("{} {}\n".format(event, self.what))
