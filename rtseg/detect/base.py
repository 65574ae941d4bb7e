"""What the pipeline asks of a detector: the ``Detector`` protocol, and ``DetectorBase`` with its optional parts.

The shared inference worker calls every member below on whatever detector it
is given (Mask R-CNN, the page's filtered view of it, your own, stubs in tests
and benchmarks), so each is declared here rather than probed for at run time.
A detector of your own subclasses ``DetectorBase`` (or writes the members
itself): the base supplies what a detector with no device to prepare and no
steps to time would write anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

import numpy as np

from rtseg.core.structures import Detections


class Detector(Protocol):
    """Anything that finds instances in a batch of RGB uint8 images."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the class ids its detections carry."""

    @property
    def last_timings(self) -> Mapping[str, float]:
        """Seconds per step of the last ``detect`` call (preprocess, model, postprocess), for the stage timers."""

    @property
    def precision_note(self) -> str | None:
        """One line saying which precision runs and why (``auto`` on this device), for the summary; None if moot."""

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...

    def warm_up(self, height: int, width: int, batch_size: int) -> None:
        """Prepare for a frame size once (CUDA kernels, buffers) before real frames of it are timed."""


class DetectorBase:
    """The optional parts of ``Detector`` with their do-nothing defaults; subclasses write ``detect``.

    The defaults are class attributes (immutable), so a subclass needs no ``__init__`` for them and may
    override any of them at class level or per instance.
    """

    class_names: tuple[str, ...] = ()
    last_timings: Mapping[str, float] = MappingProxyType({})
    precision_note: str | None = None

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        raise NotImplementedError

    def warm_up(self, height: int, width: int, batch_size: int) -> None:
        """Nothing to prepare."""
