"""meqg's library: concept store, encoders, VMM, gate and ledger. MLX + numpy; no UI code.

Importing it is cheap: the BLAS and malloc setup MLX needs runs when MLX is first imported
(`backend.configure_when_mlx_loads`).
"""

import os

os.environ.setdefault("LANCEDB_LOG", "error")

from .backend import configure_when_mlx_loads  # noqa: E402

configure_when_mlx_loads()

__version__ = "0.1.0"
