"""Export writers (`ilsvrc`, `webdataset`) behind write(sample)/close(), and `run_export`."""

from __future__ import annotations

# Both modules import only the standard library at load time (the heavy parts load inside
# run_export), so `import curation.export` stays cheap.
from curation.export.base import FORMATS
from curation.export.run import ExportError, run_export

__all__ = ["FORMATS", "ExportError", "run_export"]
