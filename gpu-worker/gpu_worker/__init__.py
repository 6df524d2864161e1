"""GPU worker: a DeepSeek-V3-architecture inference server (model, engine, HTTP server)."""
