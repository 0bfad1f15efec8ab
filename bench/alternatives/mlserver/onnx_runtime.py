"""MLServer serving an ONNX model with ONNX Runtime: the custom runtime its docs describe.

MLServer 1.7 ships no ONNX runtime; this is the usual ``MLModel`` with its NumPy codec.
"""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self._session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self._outputs = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        results = self._session.run(self._outputs, inputs)
        outputs = [NumpyCodec.encode_output(name, array) for name, array in zip(self._outputs, results, strict=True)]
        return InferenceResponse(model_name=self.name, outputs=outputs)
