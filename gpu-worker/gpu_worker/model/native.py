"""Compile one of this package's C++ files into a shared library on first use, cached on disk, and load it.

No build step and no Python or torch headers: the source is plain C++ behind an `extern "C"` interface
called through ctypes, so a fresh clone (or the Docker image, if it has a compiler) builds it in about a
second on first use. Libraries are cached under GPU_WORKER_KERNEL_CACHE, else
$XDG_CACHE_HOME/gpu-worker/kernels (~/.cache/...), outside the repository, named by a hash of the source,
the compiler and its flags, so an edit or another CPU class builds a new one and a stale one is never
loaded. Concurrent builders write a private file and rename it into place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

BUILD_TIMEOUT_S = 120


class NativeBuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    configured = os.environ.get("GPU_WORKER_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpu-worker" / "kernels"


def compiler() -> str:
    """$CXX, else the first C++ compiler on PATH."""
    configured = os.environ.get("CXX")
    found = configured or next((p for p in map(shutil.which, ("c++", "g++", "clang++")) if p), None)
    if not found:
        raise NativeBuildError("no C++ compiler (set CXX or install g++)")
    return found


def compiler_flags(openmp: bool = False) -> list[str]:
    """Optimised, portable to this CPU class only: AVX2 + FMA where torch found AVX2 or better (never
    -march=native, whose library would crash on an older CPU sharing the cache). -fno-trapping-math lets
    clamps and selects vectorise; it assumes FP exceptions are not trapped (they never are here) and
    changes no result, unlike -ffast-math, which would reorder sums. With openmp, -fopenmp: the library
    then needs libgomp.so.1, which resolves to the copy torch already loaded (same soname), so its
    parallel regions run on torch's OpenMP threads."""
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fno-trapping-math"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    if openmp:
        flags.append("-fopenmp")
    return flags


def build(source: Path, cache: Path | None = None, openmp: bool = False) -> Path:
    """The shared library of `source`, compiled now unless a cached one exists. Raises NativeBuildError."""
    cxx, flags = compiler(), compiler_flags(openmp)
    try:
        text = source.read_text()
    except OSError as e:
        raise NativeBuildError(f"cannot read {source}: {e}") from e
    key = hashlib.sha256("\0".join([text, cxx, *flags]).encode()).hexdigest()[:16]
    cache = cache or cache_dir()
    target = cache / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cache, prefix=f".{source.stem}-", suffix=".so")
        os.close(fd)
    except OSError as e:
        raise NativeBuildError(f"cannot write the kernel cache {cache}: {e}") from e
    try:
        run = subprocess.run([cxx, *flags, "-o", partial, str(source)], capture_output=True, text=True,
                             timeout=BUILD_TIMEOUT_S)
        if run.returncode != 0:
            raise NativeBuildError(f"{cxx} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NativeBuildError(f"{cxx}: {e}") from e
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def load(source: Path, cache: Path | None = None, openmp: bool = False) -> ctypes.CDLL:
    """build(source) then load it. ctypes.CDLL calls release the GIL while the C code runs."""
    path = build(source, cache, openmp)
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeBuildError(f"cannot load {path}: {e}") from e
