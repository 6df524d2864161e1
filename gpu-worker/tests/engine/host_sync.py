"""Fails on anything that makes the host wait for the device: reading a value (item, bool, int,
tolist, numpy), an op whose output shape depends on the data (nonzero, masked_select, unique, a
boolean index, repeat_interleave without output_size), or a copy to the host. On CPU these cost
nothing, but on CUDA each one stalls the step and breaks a CUDA graph capture."""
from __future__ import annotations

import contextlib
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_DATA_DEPENDENT = {
    aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default, aten.is_nonzero.default,
    aten.equal.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    aten.bincount.default, aten.histc.default,
}


class HostSync(AssertionError):
    pass


class _Detector(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (aten.repeat_interleave.Tensor, aten.repeat_interleave.self_Tensor) and kwargs.get("output_size") is None:
            raise HostSync(f"{func} without output_size")
        if func is aten.index.Tensor:
            if any(i is not None and i.dtype == torch.bool for i in args[1]):
                raise HostSync("indexing with a boolean mask")
        elif func in _DATA_DEPENDENT:
            raise HostSync(str(func))
        if func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst_device = args[0].device if func is aten.copy_.default else kwargs.get("device")
            if dst_device is not None and torch.device(dst_device).type == "cpu" and src.device.type != "cpu":
                raise HostSync(f"copy to the host: {func}")
        return func(*args, **kwargs)


def _refuse(name):
    def refuse(*_args, **_kwargs):
        raise HostSync(f"Tensor.{name}")
    return refuse


@contextlib.contextmanager
def no_host_sync():
    """Run the block under the detector. Tensor.tolist and .numpy read memory without going through
    the dispatcher on CPU, so they are refused directly."""
    with (mock.patch.object(torch.Tensor, "tolist", _refuse("tolist")),
          mock.patch.object(torch.Tensor, "numpy", _refuse("numpy")), _Detector()):
        yield
