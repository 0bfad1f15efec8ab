"""Every tensor an ONNX model keeps outside its file must name one of the version's pinned, verified files.

Shared by ONNX Runtime's predictor and ONNX Runtime GenAI's, without importing either runtime.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from modelfn.errors import ContractError
from modelfn.runtime.predictors.onnx_external import MalformedModel, external_locations_in_file

if TYPE_CHECKING:
    from modelfn.runtime.artifacts import VerifiedArtifact


def check_external_data(artifact: VerifiedArtifact) -> None:
    """Every tensor kept outside the model file must name one of the version's pinned, verified files."""
    try:  # the verified descriptor, the file ONNX Runtime then loads
        external = external_locations_in_file(artifact.fd)
    except (MalformedModel, OSError) as exc:
        raise ContractError(f"artifact is not a loadable ONNX model: {exc}") from None
    pinned = set(artifact.names[1:])
    stray = [(name, location) for name, location in external if posixpath.normpath(location) not in pinned]
    if stray:
        names = [name for name, _ in stray[:5]]
        locations = sorted({location for _, location in stray})[:5]
        raise ContractError(
            f"artifact is not a loadable ONNX model: tensor(s) {names} keep their data in external files "
            f"{locations} that the contract does not pin; list each file with its sha256 under artifact.files "
            "(modelfn digests FOLDER prints them), or embed the data with "
            "onnx.save_model(model, path, save_as_external_data=False) (models up to 2 GB)"
        )
