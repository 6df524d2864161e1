"""HTTP server of the GPU worker: the gateway protocol on top of the engine."""
