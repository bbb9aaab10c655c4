"""RawFusion-layout data: scene discovery, splits, reading, checking, synthesis."""

from harness.data.scenes import (
    EXPOSURE_GROUPS,
    NUM_FRAMES,
    Scene,
    discover_scenes,
    frame_shape,
    parse_scene_list,
    read_frames,
    read_gt,
    select_scenes,
)

__all__ = [
    "EXPOSURE_GROUPS",
    "NUM_FRAMES",
    "Scene",
    "discover_scenes",
    "frame_shape",
    "parse_scene_list",
    "read_frames",
    "read_gt",
    "select_scenes",
]
