"""Exports of meqg models to PyTorch/CUDA and CoreML. Arrives with the VMM."""
