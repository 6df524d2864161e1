"""Load a Hugging Face DeepSeek-V3 checkpoint directory into DeepseekV3ForCausalLM.

Reads config.json and model.safetensors or sharded model-*.safetensors with their index. Tensors are
memory-mapped (safetensors) and each is read once, straight into its slice of our parameters (experts are
stacked, q_a/kv_a and gate/up projections fused). FP8 weights with a `weight_scale_inv` sibling stay
FP8 with their block scales where the model holds them so (`load_model(keep_fp8=...)`), else they are
dequantized at load. Layers at or beyond num_hidden_layers (the MTP module) are skipped. Every name and
shape is checked before any data is read; problems are reported together, by tensor name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from gpu_worker.parallel.state import Parallel, using

from . import fp8
from .checkpoint_writer import tensor_shapes
from .backend import resolve_kernel_backend
from .config import ModelConfig
from .deepseek_v3 import DeepseekV3ForCausalLM

log = logging.getLogger("gpu_worker.model")

SCALE_SUFFIX = "_scale_inv"  # "x.weight_scale_inv" scales "x.weight"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


class CheckpointError(ValueError):
    def __init__(self, missing=(), unexpected=(), misshaped=(), other=()):
        self.missing, self.unexpected, self.misshaped = sorted(missing), sorted(unexpected), sorted(misshaped)
        parts = []
        if self.missing:
            parts.append(f"missing tensors: {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected tensors: {', '.join(self.unexpected)}")
        if self.misshaped:
            parts.append(f"misshaped tensors: {', '.join(self.misshaped)}")
        parts.extend(other)
        super().__init__("; ".join(parts))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               kernel_backend: str | None = None, keep_fp8: bool | None = None) -> DeepseekV3ForCausalLM:
    """keep_fp8: hold an FP8 checkpoint's linear layers and experts as e4m3 + block scales (the default
    with the Triton backend, whose W8A8 kernels multiply them as they are), or widen them to `dtype` at
    load (the default with the torch backend: CPUs have no FP8 matmul)."""
    path = Path(path)
    config = ModelConfig.from_dir(path)
    kernel_backend = resolve_kernel_backend(kernel_backend, device)
    log.info("kernel backend: %s (attention and MoE)", kernel_backend)
    if keep_fp8 is None:
        keep_fp8 = kernel_backend == "triton"
    if not keep_fp8:
        config = dataclasses.replace(config, fp8_block_size=None)
    model = DeepseekV3ForCausalLM(config, dtype=dtype, device=device, kernel_backend=kernel_backend)
    load_weights(model, path)
    model.eval()
    model.requires_grad_(False)
    return model


def checkpoint_files(path: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: path / file for name, file in weight_map.items()}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    names = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            names.update({name: file for name in f.keys()})
    return names


def load_weights(model: DeepseekV3ForCausalLM, path: str | Path) -> None:
    """Fill the model's parameters; with tensor or expert parallelism, only this rank's slices are read
    (safetensors get_slice), never a whole sharded tensor."""
    path = Path(path)
    config = model.config
    layout = model.checkpoint_layout()
    with using(Parallel()):
        full_shapes = tensor_shapes(config)  # what the checkpoint must hold, whatever this rank reads of it
    located = {name: file for name, file in checkpoint_files(path).items() if not _is_extra_layer(name, config)}
    block = ModelConfig.from_dir(path).fp8_block_size or (128, 128)  # the checkpoint's, kept or not

    with ExitStack() as stack:
        handles: dict[Path, object] = {}

        def handle(file: Path):
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(file, framework="pt", device=str(model.device)))
            return handles[file]

        # 1. names and shapes, from metadata only
        missing = [name for name in layout if name not in located]
        unexpected, misshaped, other = [], [], []
        for name, file in located.items():
            if name.endswith(SCALE_SUFFIX) and name not in layout:  # scales of weights widened at load
                if name[: -len(SCALE_SUFFIX)] not in layout:
                    unexpected.append(name)
                continue
            if name not in layout:
                unexpected.append(name)
                continue
            got = tuple(handle(file).get_slice(name).get_shape())
            if got != full_shapes[name]:
                misshaped.append(f"{name} (expected {list(full_shapes[name])}, got {list(got)})")
            stored_fp8 = _dtype_of(handle(file), name) == "F8_E4M3"
            if stored_fp8 and name + SCALE_SUFFIX not in located:
                other.append(f"FP8 tensor {name} has no {name + SCALE_SUFFIX}")
            entry = layout[name]
            if entry is not None and entry[0].dtype == fp8.FP8_DTYPE and not stored_fp8:
                other.append(f"{name} is stored as {_dtype_of(handle(file), name)}, not FP8 like the rest")
        if missing or unexpected or misshaped or other:
            raise CheckpointError(missing, unexpected, misshaped, other)

        # 2. data: each tensor's part for this rank read once, into its slice
        with torch.no_grad():
            for name, entry in layout.items():
                if entry is None:  # another rank's expert
                    continue
                param, index, *source = entry
                source = source[0] if source else ()
                tensor = handle(located[name]).get_slice(name)[source] if source else handle(located[name]).get_tensor(name)
                if tensor.dtype == fp8.FP8_DTYPE and param.dtype != fp8.FP8_DTYPE:  # widened at load
                    scale = handle(located[name + SCALE_SUFFIX]).get_slice(name + SCALE_SUFFIX)
                    tensor = dequantize_part(tensor, scale, full_shapes[name], source, block)
                param[index].copy_(tensor)


def dequantize_part(part: torch.Tensor, scale, shape: tuple[int, int], source: tuple, block: tuple[int, int]
                    ) -> torch.Tensor:
    """e4m3 `part` = weight[source] of a [rows, cols] weight -> float32, reading only the scale blocks that
    cover it. A part may start inside a block (a rank's first row need not be a multiple of 128)."""
    offsets, ends, block_slices = [], [], []
    for dim, size in enumerate(shape):
        cut = source[dim] if dim < len(source) else slice(None)
        first, stop, _ = cut.indices(size)
        offsets.append(first - first // block[dim] * block[dim])
        ends.append(stop)
        block_slices.append(slice(first // block[dim], -(-stop // block[dim])))
    scales = scale[tuple(block_slices)].to(torch.float32)
    expanded = scales.repeat_interleave(block[0], dim=0)[offsets[0]: offsets[0] + part.shape[0]]
    expanded = expanded.repeat_interleave(block[1], dim=1)[:, offsets[1]: offsets[1] + part.shape[1]]
    return part.to(torch.float32) * expanded


def _is_extra_layer(name: str, config: ModelConfig) -> bool:
    match = _LAYER.match(name)
    return match is not None and int(match.group(1)) >= config.num_hidden_layers


def _dtype_of(handle, name: str) -> str:
    return handle.get_slice(name).get_dtype()
