"""Fused kernels (Triton) with a plain PyTorch reference beside each. Empty for now: the model uses
PyTorch ops that run unchanged on CPU and CUDA."""
