"""meqg models outside MLX: the VMM in PyTorch (torch_vmm) and weight maps to and from MLX (weights)."""
