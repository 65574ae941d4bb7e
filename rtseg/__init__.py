"""rtseg: real-time Mask R-CNN instance segmentation for video."""

__version__ = "0.1.0"
