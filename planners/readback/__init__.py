"""Read-back of imagined videos: the camera path (flow_path.py: dense flow + depth; inverse_dynamics.py:
a small CNN), the target's position (target.py). The red box is read by models/red_box.py, beside the
code that draws it. The shared path type is path.PathEstimate.

`READBACKS` is the registry of path read-back methods, the one list every user picks from (planners'
`readback=`, `eval imagination readback=`, QA export, the read-back accuracy tool):
  flow      dense flow + the current depth, planar motion fit (x, z, yaw: a ground robot)
  flow_pnp  dense flow + the current depth, full 6-DoF fit (cv2.solvePnPRansac)
  idm       the inverse-dynamics CNN (no depth needed)
  true      the poses the imagination reports (the oracle's renders only)
A method is `fn(frames, depth, K, poses=None, cfg=None) -> PathEstimate`; add one with
`READBACKS.register(name, fn, config_cls)`. Methods are imported on use, so `import planners.readback`
stays cheap (torch is only needed for the inverse-dynamics model).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from envs.registry import Registry
from planners.readback.path import PathEstimate
from planners.readback.target import target_position

READBACKS = Registry("read-back", key="readback")
READBACKS.register("flow", "planners.readback.flow_path.flow_readback", "planners.readback.flow_path.FlowPathConfig")
READBACKS.register("flow_pnp", "planners.readback.flow_path.flow_readback", "planners.readback.flow_path.PnPFlowPathConfig")
READBACKS.register("idm", "planners.readback.inverse_dynamics.idm_readback")
READBACKS.register("true", "planners.readback.path.reported_path")


def read_back(method: str, frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray, poses: np.ndarray | None = None,
              cfg: Any = None) -> PathEstimate:
    """The camera path of `frames` by the registered `method` (cfg: its config, default when None)."""
    entry = READBACKS.get(method)
    if cfg is None and entry.config is not None:
        cfg = entry.config_class()()
    return entry.load()(frames, depth, K, poses=poses, cfg=cfg)


__all__ = ["READBACKS", "PathEstimate", "read_back", "target_position"]
