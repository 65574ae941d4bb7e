"""The records every stage hands on: one ``Frame`` per video frame, carrying its ``Detections``.

Capture fills index, timing and image; inference fills ``detections``; tracking
fills ``detections.track_ids``; scene analytics fills ``events`` and ``scene``;
rendering fills ``rendered``; sinks read it all.
Images are RGB uint8 (H, W, 3) throughout, the layout PyAV decodes to and the
model expects; the window sink converts to BGR for OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from rtseg.core.events import SceneEvent, SceneState

_UNTRACKED = np.zeros(0, np.int64)  # the default of ``Detections.track_ids``, replaced in ``__post_init__``


@dataclass
class Detections:
    """Instances found in one frame, as parallel arrays (N = number of instances).

    boxes: (N, 4) float32 xyxy in source pixels; scores: (N,) float32;
    class_ids: (N,) int64 indices into ``class_names``; masks: (N, H, W) bool at
    source resolution; track_ids: (N,) int64, -1 where no confirmed track.

    ``masks`` is a numpy array, except when the model runs on a GPU: then it is
    a torch tensor on that GPU, so that the renderer composes the overlay there
    and only one finished frame crosses the bus. Code that needs the pixels on
    the host calls ``host_masks()``, which works for both.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray | torch.Tensor
    class_names: tuple[str, ...] = ()
    track_ids: np.ndarray = field(default_factory=lambda: _UNTRACKED)  # left out (or None): -1 for every instance

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if not (len(self.scores) == len(self.class_ids) == len(self.masks) == n):
            raise ValueError("Detections arrays must have the same length")
        if self.track_ids is None or self.track_ids is _UNTRACKED:  # None is taken as left out
            self.track_ids = np.full(n, -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, height: int, width: int, class_names: tuple[str, ...] = ()) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            class_ids=np.zeros(0, np.int64),
            masks=np.zeros((0, height, width), bool),
            class_names=class_names,
        )

    def host_masks(self) -> np.ndarray:
        """The masks as a numpy array, downloaded from the GPU when they live there."""
        if isinstance(self.masks, torch.Tensor):
            return self.masks.cpu().numpy()
        return self.masks

    def host_mask_window(self, i: int, rows: slice, columns: slice) -> np.ndarray:
        """Part of mask ``i`` as a numpy array: only that window crosses from the GPU when the masks live there."""
        window = self.masks[i][rows, columns]
        return window.cpu().numpy() if isinstance(window, torch.Tensor) else window

    def names(self) -> list[str]:
        """Class name of each instance."""
        return [self.class_names[c] if 0 <= c < len(self.class_names) else str(c) for c in self.class_ids]

    def select(self, keep: np.ndarray) -> Detections:
        """The subset picked by a boolean mask or an index array."""
        masks = self.masks[torch.as_tensor(keep, device=self.masks.device)] if isinstance(self.masks, torch.Tensor) \
            else self.masks[keep]
        return Detections(
            boxes=self.boxes[keep], scores=self.scores[keep], class_ids=self.class_ids[keep],
            masks=masks, class_names=self.class_names,
            track_ids=self.track_ids[keep],
        )


@dataclass
class Frame:
    """One video frame on its way through the pipeline.

    ``pts`` and ``time_base`` are the source's own presentation timestamp so that
    the MP4 sink can reproduce the input timeline exactly (variable frame rate
    included); ``timestamp`` is the same instant in seconds, for people and JSON.
    ``captured_at`` is the monotonic clock reading when capture produced it.
    Still images get consecutive indices as timestamps, one second apart.
    """

    index: int
    image: np.ndarray
    pts: int
    time_base: Fraction
    captured_at: float
    name: str | None = None  # the file name of a still image, so outputs can keep it
    stream_id: int = 0  # which of the run's streams it belongs to; outputs only ever take their own stream's frames
    detections: Detections | None = None
    rendered: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    events: list[SceneEvent] = field(default_factory=list)  # scene analytics' events of this frame
    scene: SceneState | None = None  # zones and lines with their counts after this frame (None: no analytics)

    @property
    def timestamp(self) -> float:
        return float(self.pts * self.time_base)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
