"""Scene analytics: zones and lines decided by each object's mask, giving counts, occupancy, dwell and events.

``SceneAnalytics`` works on any ``Detections`` with track ids (the pipeline runs
one per stream, between tracking and rendering); ``Zone`` and ``Line`` are the
checked geometry it decides about.
"""

from rtseg.analytics.scene import SceneAnalytics, Tally, check_tracking, regions
from rtseg.analytics.shares import RegionMaps, RegionShares
from rtseg.core.events import SceneEvent, SceneState
from rtseg.core.regions import Line, Zone, parse_line, parse_zone

__all__ = ["Line", "RegionMaps", "RegionShares", "SceneAnalytics", "SceneEvent", "SceneState", "Tally", "Zone",
           "check_tracking", "parse_line", "parse_zone", "regions"]
