"""The embedded world's apartments and episodes as Habitat files: `.glb` scenes with both semantic
layouts and a habitat-lab ObjectNav `.json.gz`, so one episode set runs in both worlds (and in
habitat-lab). `python -m envs.habitat.procedural OUT_DIR [split] [n] [seed]` writes them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from envs.embedded.config import WorldConfig
from envs.habitat.episodes import ObjectGoal, ObjectNavEpisode, rotation_of_yaw, write_objectnav


def export_episodes(out_dir: str | Path, split: str = "test", n: int = 1, seed: int = 0,
                    cfg: WorldConfig | None = None) -> Path:
    """Export the scenes of `envs.embedded.task.make_episodes(split, n, seed)` (skipping those already
    there) and write `objectnav_<split>_<seed>.json.gz` with the embedded world's view points as goals.
    Episode ids are the embedded ones, so results of both worlds line up."""
    from envs.embedded.assets import get_assets
    from envs.embedded.export import export_glb
    from envs.embedded.task import make_episodes

    cfg = cfg or WorldConfig()
    out = Path(out_dir)
    episodes = []
    for ep in make_episodes(split, n, seed, cfg):
        glb = out / f"apartment_{ep.scene_seed}.glb"
        if not (glb.is_file() and glb.with_name(glb.stem + ".semantic.json").is_file()):
            export_glb(ep.scene_seed, out, cfg)
        assets = get_assets(ep.scene_seed, cfg)
        goals = tuple(
            ObjectGoal(o.instance_id, o.category, tuple(float(v) for v in o.position),
                       np.column_stack([vp[:, 0], np.zeros(len(vp)), vp[:, 1]]) if len(vp := assets.view_points(o.instance_id)) else np.zeros((0, 3)))
            for o in assets.scene.instances_of(ep.target_category))
        x, y, z = ep.start.position
        episodes.append(ObjectNavEpisode(ep.episode_id, glb.name, (x, y - cfg.sensor_height, z), rotation_of_yaw(ep.start.yaw),
                                         ep.target_category, goals, ep.geodesic_start_distance))
    return write_objectnav(out / f"objectnav_{split}_{seed}.json.gz", episodes)


def main(argv: list[str]) -> int:
    usage = "usage: python -m envs.habitat.procedural OUT_DIR [split=test] [n=1] [seed=0]"
    if not 1 <= len(argv) <= 4:
        print(usage, file=sys.stderr)
        return 2
    try:
        n, seed = (int(argv[2]) if len(argv) > 2 else 1), (int(argv[3]) if len(argv) > 3 else 0)
        print(export_episodes(argv[0], argv[1] if len(argv) > 1 else "test", n, seed))
    except ValueError as e:  # a non-integer n/seed, an unknown split, n < 0
        print(f"error: {str(e).splitlines()[0]}; {usage}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
