"""Device and dtype choice. Never imports torch unless it is installed and CUDA is asked about."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audiosubnet.errors import ConfigError

if TYPE_CHECKING:
    import torch


def torch_installed() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _nvidia_driver_present() -> bool:
    """A cheap look for an NVIDIA driver, so a CPU-only machine never pays for importing torch."""
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl") or sys.platform == "win32"


def cuda_available() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    if not torch_installed():
        return False
    if "torch" not in sys.modules and not _nvidia_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(pref: str = "auto") -> str:
    pref = (pref or "auto").lower()
    if pref == "auto":
        return "cuda" if cuda_available() else "cpu"
    if pref.startswith("cuda") and not cuda_available():
        raise ConfigError(f"device '{pref}' was asked for but CUDA is not available",
                          hint="Use --device cpu, or install a CUDA build of torch.")
    return pref


def resolve_dtype(device: str, pref: str = "auto") -> str:
    """fp32 on CPU; bf16 on CUDA where supported (else fp16), unless asked otherwise."""
    pref = (pref or "auto").lower()
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    pref = aliases.get(pref, pref)
    if pref != "auto":
        if pref not in ("float32", "float16", "bfloat16"):
            raise ConfigError(f"unknown dtype '{pref}'", hint="Use auto, float32, float16 or bfloat16.")
        return pref
    if not device.startswith("cuda"):
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def resolve(cls, device: str = "auto", dtype: str = "auto") -> Placement:
        d = resolve_device(device)
        return cls(d, resolve_dtype(d, dtype))

    def __str__(self) -> str:
        return f"{self.device}/{self.dtype}"


def total_memory_bytes(device: str) -> int:
    """Total memory of the device: GPU memory on CUDA, physical RAM on CPU."""
    if device.startswith("cuda"):
        import torch

        idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(idx).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def set_cpu_threads(n: int | None = None) -> None:
    """Pin torch's intra-op threads once. Two libraries each spawning threads on 2 cores thrash."""
    if "torch" not in sys.modules:
        return
    import torch

    n = n or int(os.environ.get("ASN_TORCH_THREADS", 0)) or max(1, os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
