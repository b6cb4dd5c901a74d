"""meqg's library: concept store, encoders, VMM, gate and ledger. MLX + numpy; no UI code."""

import os

os.environ.setdefault("LANCEDB_LOG", "error")

from .backend import configure_blas, keep_freed_buffers  # noqa: E402

configure_blas()
keep_freed_buffers()

__version__ = "0.1.0"
