"""Inference engine: sequences, paged latent cache with prefix reuse, scheduling, sampling."""
