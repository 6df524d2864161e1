"""Load a Hugging Face DeepSeek-V3 checkpoint directory into DeepseekV3ForCausalLM: each tensor
memory-mapped and read once into its slice of our parameters; the MTP layers skipped. Every name
and shape is checked before any data is read, and problems are reported together, by name.
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
from .backend import resolve_kernel_backend
from .make_checkpoint import tensor_shapes
from .config import ModelConfig
from .deepseek_v3 import DeepseekV3ForCausalLM

log = logging.getLogger("gpu_worker.model")

SCALE = "_scale_inv"  # "x.weight_scale_inv" scales "x.weight"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


class CheckpointError(ValueError):
    def __init__(self, missing=(), unexpected=(), misshaped=(), other=()):
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)
        self.misshaped = sorted(misshaped)
        named = dict(missing=self.missing, unexpected=self.unexpected, misshaped=self.misshaped)
        parts = [f"{what} tensors: {', '.join(names)}" for what, names in named.items() if names]
        super().__init__("; ".join(parts + list(other)))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               kernel_backend: str | None = None, keep_fp8: bool | None = None) -> DeepseekV3ForCausalLM:
    """keep_fp8: hold an FP8 checkpoint's weights as e4m3 + block scales (default on the Triton
    backend, whose W8A8 kernels take them) or widen them at load (default on torch: CPUs have no
    FP8 matmul)."""
    config = ModelConfig.from_dir(path)
    kernel_backend = resolve_kernel_backend(kernel_backend, device)
    log.info("kernel backend: %s (attention and MoE)", kernel_backend)
    if not (kernel_backend == "triton" if keep_fp8 is None else keep_fp8):
        config = dataclasses.replace(config, fp8_block_size=None)
    model = DeepseekV3ForCausalLM(config, dtype=dtype, device=device, kernel_backend=kernel_backend)
    load_weights(model, path)
    return model.eval().requires_grad_(False)


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
            names.update(dict.fromkeys(f.keys(), file))
    return names


def load_weights(model: DeepseekV3ForCausalLM, path: str | Path) -> None:
    """Fill the model's parameters; with tensor or expert parallelism, only this rank's slices are
    read (safetensors get_slice), never a whole sharded tensor."""
    path = Path(path)
    layout = model.checkpoint_layout()
    with using(Parallel()):
        full_shapes = tensor_shapes(model.config)  # the checkpoint's, whatever this rank reads
    layers = model.config.num_hidden_layers
    located = {name: file for name, file in checkpoint_files(path).items()
               if not ((m := _LAYER.match(name)) and int(m.group(1)) >= layers)}
    block = ModelConfig.from_dir(path).fp8_block_size or (128, 128)  # the checkpoint's, kept or not

    with ExitStack() as stack:
        handles: dict[Path, object] = {}

        def open_slice(name: str):
            file = located[name]
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(file, "pt", device=str(model.device)))
            return handles[file].get_slice(name)

        # 1. names, shapes and dtypes, from metadata only
        missing = [name for name in layout if name not in located]
        unexpected, misshaped, other = [], [], []
        for name in located:
            if name not in layout:  # the scales of weights widened at load are expected
                if not (name.endswith(SCALE) and name[:-len(SCALE)] in layout):
                    unexpected.append(name)
                continue
            got = tuple(open_slice(name).get_shape())
            if got != full_shapes[name]:
                misshaped.append(f"{name} (expected {list(full_shapes[name])}, got {list(got)})")
            stored = open_slice(name).get_dtype()
            if stored == "F8_E4M3" and name + SCALE not in located:
                other.append(f"FP8 tensor {name} has no {name + SCALE}")
            kept_fp8 = layout[name] is not None and layout[name][0].dtype == fp8.FP8_DTYPE
            if kept_fp8 and stored != "F8_E4M3":
                other.append(f"{name} is stored as {stored}, not FP8 like the rest")
        if missing or unexpected or misshaped or other:
            raise CheckpointError(missing, unexpected, misshaped, other)

        # 2. data: each tensor's part for this rank read once, into its slice
        with torch.no_grad():
            for name, entry in layout.items():
                if entry is None:  # another rank's expert
                    continue
                param, index, *source = entry
                source = source[0] if source else ()
                tensor = open_slice(name)[source or slice(None)]
                if tensor.dtype == fp8.FP8_DTYPE and param.dtype != fp8.FP8_DTYPE:  # widened at load
                    tensor = dequantize_part(tensor, open_slice(name + SCALE), full_shapes[name],
                                             source, block)
                param[index].copy_(tensor)


def dequantize_part(part: torch.Tensor, scale, shape: tuple[int, int], source: tuple,
                    block: tuple[int, int]) -> torch.Tensor:
    """e4m3 `part` = weight[source] -> float32, reading only the scale blocks that cover it (a
    rank's part may start inside a block)."""
    cuts = [cut.indices(size)[:2] for cut, size in zip(source + (slice(None),) * 2, shape)]
    covering = tuple(slice(start // b, fp8.blocks(end, b)) for (start, end), b in zip(cuts, block))
    first = tuple(start % b for (start, _), b in zip(cuts, block))
    return part.float() * fp8.expand_scales(scale[covering], part.shape, first, block)
