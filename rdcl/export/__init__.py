"""``rdcl export``: a trained model as one self-contained predictor file (``docs/export.md``).

- :mod:`rdcl.export.torchscript`: trace the network, script the predictor's pipeline
  (:mod:`rdcl.inference.pipeline`: preprocessing, sliding window, network), save with metadata.
- :mod:`rdcl.export.aoti`: the network through ``torch.export`` + AOTInductor (``.pt2``).
- :mod:`rdcl.formats.exported`: ``rdcl.json`` / ``config.json`` (the file format, below inference).
- :mod:`rdcl.export.check`: exported vs eager predictor before success.
- :mod:`rdcl.export.exporter`: :func:`export_model`, atomic and checked.
"""

from __future__ import annotations

from rdcl.export.exporter import ExportCheckError, ExportResult, export_model, export_predictor

__all__ = [
    "ExportCheckError",
    "ExportResult",
    "export_model",
    "export_predictor",
]
