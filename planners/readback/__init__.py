"""Read-back of imagined videos: the red box (box.py), the camera path (flow_path.py: dense flow +
depth; inverse_dynamics.py: a small CNN), the target's position (target.py). The shared path type
is path.PathEstimate. Submodules are imported on use so that `import planners.readback` stays
cheap (torch is only needed for the inverse-dynamics model)."""
from planners.readback.box import detect_red_box
from planners.readback.path import PathEstimate
from planners.readback.target import target_centred, target_position

__all__ = ["PathEstimate", "detect_red_box", "target_centred", "target_position"]
