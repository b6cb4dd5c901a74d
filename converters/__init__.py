"""meqg models outside MLX: the VMM in PyTorch (torch_vmm) and weight maps to and from MLX (weights)."""

import meqg_mlx  # noqa: F401  (before any module here imports mlx.core: MLX binds its BLAS when it loads)
