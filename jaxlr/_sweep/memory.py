"""Will the sweep fit? XLA's memory estimate of the compiled programs, before step 0.

A sweep's memory grows with the number of members M (each holds its parameters, optimizer
state, gradients and activations); past the device's memory it used to die in the first call
with ``RESOURCE_EXHAUSTED`` and no hint. The programs are compiled before they run anyway, and
XLA's buffer assignment knows what each one needs per device
(``Compiled.memory_analysis()``: arguments + outputs + temporaries - aliased), so the sweep
compares that with what the device has free and, when it does not fit, says so with the
largest M that does, before anything trains.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import numpy as np

if TYPE_CHECKING:
    import chex


# program_bytes per executable: the analysis is a property of the executable, which the
# executable cache hands to every call of the same program (~1 ms a call saved)
_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def program_bytes(compiled: jax.stages.Compiled) -> int | None:
    """Bytes one device needs to run ``compiled`` (None when XLA gives no analysis)."""
    if compiled not in _BYTES:
        _BYTES[compiled] = _analysed_bytes(compiled)
    return _BYTES[compiled]


def _analysed_bytes(compiled: jax.stages.Compiled) -> int | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - a backend without the analysis
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def free_bytes(devices: Sequence[jax.Device]) -> int | None:
    """Bytes free for ONE of ``devices`` (the smallest of this process' own), or None when
    unknown. An accelerator reports its own (``memory_stats``, which only a device's own
    process may ask); host devices share the machine's available memory (``MemAvailable``),
    so each gets its share."""
    devices = [d for d in devices if d.process_index == jax.process_index()]  # this host's
    if not devices:
        return None
    stats = [d.memory_stats() for d in devices]
    if all(s and "bytes_limit" in s for s in stats):
        return min(int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0)) for s in stats)
    if all(d.platform == "cpu" for d in devices):
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024 // len(devices)
        except OSError:
            return None
    return None


def tree_bytes(tree: chex.ArrayTree) -> int:
    return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(tree) if hasattr(x, "dtype"))


class SweepTooLarge(MemoryError):
    """A sweep that does not fit: ``fits`` is the largest member count that does."""

    def __init__(self, message: str, fits: int):
        super().__init__(message)
        self.fits = fits


def check_fits(need: int | None, free: int | None, rows: int, n_devices: int,
               shared: int) -> None:
    """Raise MemoryError when ``need`` bytes per device exceed ``free``; ``rows`` members run
    on ``n_devices`` devices and ``shared`` bytes per device do not grow with M (the data)."""
    if need is None or free is None or need <= free:
        return
    per_device = max(1, -(-rows // n_devices))
    per_member = max(1, (need - shared) / per_device)
    fits = max(0, math.floor((free - shared) / per_member)) * n_devices
    gib = 2.0**30
    raise SweepTooLarge(
        f"this sweep needs about {need / gib:.2f} GiB per device for {rows} members (XLA's "
        f"estimate of the compiled program, ~{per_member / 2**20:.1f} MiB per member), but "
        f"the device has {free / gib:.2f} GiB free: at most ~{fits} members fit at once. Run "
        f"the members in blocks (member_block='auto', or member_block={max(1, fits)}), lower "
        "batch_size or the model's size, or add devices (devices=...)", fits)
