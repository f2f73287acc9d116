"""Read-back of imagined videos: the camera path (flow_path.py: dense flow + depth; inverse_dynamics.py: a small CNN), the target's position (target.py). The red box is read by
models/red_box.py, beside the code that draws it. The shared path type
is path.PathEstimate. Submodules are imported on use so that `import planners.readback` stays
cheap (torch is only needed for the inverse-dynamics model)."""
from planners.readback.path import PathEstimate
from planners.readback.target import target_position

__all__ = ["PathEstimate", "target_position"]
