"""Tensor and expert parallelism over the GPUs of one machine (torch.distributed: NCCL on CUDA, gloo on CPU)."""
