"""The embedded world's apartments and episodes as Habitat files: `.glb` scenes with both semantic
layouts and a habitat-lab ObjectNav `.json.gz`, so one episode set runs in both worlds (and in
habitat-lab). `python -m envs.habitat.procedural out_dir=DIR [split=test] [episodes=1] [seed=0]` writes them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import MISSING

from envs.config import cli_config
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


@dataclass
class ExportConfig:
    out_dir: str = MISSING  # where the scenes and the episode file go
    split: str = "test"
    episodes: int = 1
    seed: int = 0


def main(argv: list[str]) -> int:
    cfg = cli_config(ExportConfig, argv)
    try:
        print(export_episodes(cfg.out_dir, cfg.split, cfg.episodes, cfg.seed))
    except ValueError as e:  # an unknown split, episodes < 0
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
