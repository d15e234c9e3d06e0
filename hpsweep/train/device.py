"""Where a fit runs and in what precision: autocast's dtype, and small datasets held on the GPU.

Measured in bench/RESULTS-gpu.md: a split copied to the GPU once per fit, and normalised there once,
spares every batch a copy from host memory.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from hpsweep.train.batches import BatchPlan, normalise
from hpsweep.train.data.base import PreparedData

log = logging.getLogger(__name__)

#: train and val splits up to this size (bytes) are copied to the GPU once per fit, so that no batch
#: waits for a copy from host memory; larger datasets stay on the host and travel batch by batch
RESIDENT_BYTES = 1 << 30


#: glibc's mallopt parameters: allocations of at least OWN_PAGES_FROM bytes get pages of their own, and
#: the heap gives back its free top once that is over KEEP_FREE_TOP bytes
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_OWN_PAGES_FROM, _KEEP_FREE_TOP = 8 << 20, 16 << 20
_HOST_MEMORY = {"set": False}


def return_freed_batches() -> None:
    """Fix the C allocator's thresholds for giving memory back to the system (glibc only; else nothing).

    By default glibc raises its threshold for giving large blocks pages of their own each time one is
    freed, up to 32 MB: a batch of images then lands on the heap, and the heap keeps what was freed.
    Measured on one CPU epoch over 480x480 images, a worker held 330-570 MB more than it used this
    way (about as much as the dataset). Fixed at 1 MB, every activation of a few MB got fresh pages
    instead, which the kernel zeroes on first touch, at every step: the demo's CNN trained its epochs
    1.2-1.9x slower than with glibc's defaults. Fixed at 8 MB, with the heap's free top kept up to
    16 MB (glibc trims it above 128 KB once a threshold is set), the demo's epochs take as long as
    with the defaults (its activations are up to 4 MB); the 480x480 epoch of
    tests/sweep/test_shared_data.py adds 79 MB to a worker's own memory (15 MB at 1 MB, 127 MB at
    16 MB; the test allows 124)."""
    if _HOST_MEMORY["set"]:
        return
    _HOST_MEMORY["set"] = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _OWN_PAGES_FROM)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE_TOP)
    except (OSError, AttributeError):
        log.debug("not glibc: the allocator's thresholds stay as they are")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: none on CPU (fp32); on CUDA bf16 where supported, else fp16."""
    if device.type != "cuda" or precision == "fp32":
        if precision in ("bf16", "fp16") and device.type != "cuda":
            log.warning("precision %s needs a GPU; training in fp32 on %s", precision, device)
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def resident(data: PreparedData, device: torch.device) -> PreparedData:
    if device.type != "cuda":
        return data
    splits = (data.train, data.val)
    if sum(split.nbytes for split in splits) > RESIDENT_BYTES:
        return data
    train, val = data.train.in_memory(), data.val.in_memory()  # a cache's rows, gathered once
    return replace(data, train=replace(train, x=train.x.to(device), y=train.y.to(device)),
                   val=replace(val, x=val.x.to(device), y=val.y.to(device)))


def normalised(data: PreparedData, plan: BatchPlan) -> tuple[PreparedData, BatchPlan]:
    """Images already on the GPU are normalised there once per fit, when the float copies fit in
    RESIDENT_BYTES and no augmentation runs before normalising: each batch is then one index, as in a
    hand-written loop over tensors."""
    splits = (data.train, data.val)
    if not plan.is_image or plan.augment is not None or not all(split.x.is_cuda for split in splits):
        return data, plan
    if sum(split.x.numel() * 4 for split in splits) > RESIDENT_BYTES:
        return data, plan
    data = replace(data, train=replace(data.train, x=normalise(data.train.x, plan)),
                   val=replace(data.val, x=normalise(data.val.x, plan)))
    return data, replace(plan, normalised=True)
