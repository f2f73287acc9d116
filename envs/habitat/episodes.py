"""habitat-lab's ObjectNav episode datasets (`*.json.gz`), read and written.

Layout (habitat-lab `ObjectNavDatasetV1`): `{"episodes": [...], "goals_by_category": {...}}`, where an
episode has `episode_id`, `scene_id`, `start_position` (the agent body on the floor), `start_rotation`
(quaternion x, y, z, w), `object_category` and `info.geodesic_distance`; goals are listed once per scene
and category under the key `<basename(scene_id)>_<category>`, each `{object_id, object_category,
position, view_points: [{agent_state: {position, rotation}, iou}]}`. A split file with no episodes of its
own has them in `content/*.json.gz` beside it. `{split}` in a path is replaced by the split name.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.errors import SceneError
from envs.habitat.convert import quat_wxyz_to_yaw, wxyz_to_xyzw, xyzw_to_wxyz, yaw_pitch_to_quat_wxyz

DEFAULT_SCENE_PREFIX = "data/scene_datasets/"  # habitat-lab strips it before joining scenes_dir


@dataclass(frozen=True)
class ObjectGoal:
    object_id: int
    category: str
    position: tuple[float, float, float]
    view_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (K, 3) floor points


@dataclass(frozen=True)
class ObjectNavEpisode:
    """One episode as habitat-lab stores it (positions are the agent body: on the floor)."""

    episode_id: str
    scene_id: str
    start_position: tuple[float, float, float]
    start_rotation: tuple[float, float, float, float]  # x, y, z, w
    object_category: str
    goals: tuple[ObjectGoal, ...] = ()
    geodesic_distance: float = float("nan")

    @property
    def start_yaw(self) -> float:
        return quat_wxyz_to_yaw(xyzw_to_wxyz(self.start_rotation))


def rotation_of_yaw(yaw: float) -> tuple[float, float, float, float]:
    """habitat-lab's start_rotation (x, y, z, w) for a heading."""
    return tuple(float(c) for c in wxyz_to_xyzw(yaw_pitch_to_quat_wxyz(yaw, 0.0)))


def _read_json_gz(path: Path) -> dict:
    try:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SceneError(f"episode file {path} does not exist; check env.config.episodes_file") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SceneError(f"episode file {path} is not a readable gzip-compressed JSON file ({type(e).__name__}); "
                         "download it again or write it with envs.habitat.episodes.write_objectnav") from None
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise SceneError(f"episode file {path} has no 'episodes' list (habitat-lab ObjectNav format expected)")
    return data


def _goal(g: dict, where: str) -> ObjectGoal:
    try:
        vps = [vp["agent_state"]["position"] for vp in g.get("view_points") or []]
        return ObjectGoal(int(g["object_id"]), str(g.get("object_category", "")), tuple(float(v) for v in g["position"]),
                          np.asarray(vps, dtype=np.float64).reshape(-1, 3))
    except (KeyError, TypeError, ValueError) as e:
        raise SceneError(f"{where}: a goal lacks object_id/position or has malformed view_points ({e})") from None


def resolve_scene(scene_id: str, scenes_dir: str | Path | None, base: Path) -> Path:
    """habitat-lab's rule: strip `data/scene_datasets/`, join `scenes_dir`; relative ids without a
    scenes_dir are taken relative to the episode file."""
    sid = scene_id[len(DEFAULT_SCENE_PREFIX):] if scene_id.startswith(DEFAULT_SCENE_PREFIX) else scene_id
    if os.path.isabs(sid):
        return Path(sid)
    return Path(scenes_dir) / sid if scenes_dir else base / sid


def read_objectnav(path: str | Path, split: str = "", scenes_dir: str | Path | None = None) -> list[ObjectNavEpisode]:
    """Every episode of a habitat-lab ObjectNav file (or split file + its content/ directory)."""
    p = Path(str(path).replace("{split}", split))
    data = _read_json_gz(p)
    files = [(p, data)]
    if not data["episodes"] and (p.parent / "content").is_dir():
        files = [(c, _read_json_gz(c)) for c in sorted((p.parent / "content").glob("*.json.gz"))]
    out = []
    for fp, d in files:
        goals = {k: tuple(_goal(g, f"{fp} goals_by_category[{k!r}]") for g in v)
                 for k, v in (d.get("goals_by_category") or {}).items()}
        for i, e in enumerate(d["episodes"]):
            try:
                sid, cat = str(e["scene_id"]), str(e["object_category"])
                ep = ObjectNavEpisode(
                    str(e.get("episode_id", i)), str(resolve_scene(sid, scenes_dir, fp.parent)),
                    tuple(float(v) for v in e["start_position"]), tuple(float(v) for v in e["start_rotation"]),
                    cat, goals.get(f"{os.path.basename(sid)}_{cat}", ()) or tuple(_goal(g, str(fp)) for g in e.get("goals") or []),
                    float((e.get("info") or {}).get("geodesic_distance", float("nan"))))
            except (KeyError, TypeError, ValueError) as err:
                raise SceneError(f"episode file {fp}: episode #{i} lacks scene_id/start_position/start_rotation/"
                                 f"object_category or has a malformed value ({type(err).__name__}: {err})") from None
            if len(ep.start_position) != 3 or len(ep.start_rotation) != 4:
                raise SceneError(f"episode file {fp}: episode {ep.episode_id} needs a 3-number start_position and a "
                                 "4-number start_rotation (x, y, z, w)")
            out.append(ep)
    return out


def write_objectnav(path: str | Path, episodes: list[ObjectNavEpisode], scenes_dir: str | Path | None = None) -> Path:
    """Write episodes in habitat-lab's layout (goals once per scene and category). scene_id is written
    relative to `scenes_dir` when given (habitat-lab joins it back), else as stored."""
    goals: dict[str, list[dict]] = {}
    eps = []
    for e in episodes:
        sid = os.path.relpath(e.scene_id, scenes_dir) if scenes_dir else e.scene_id
        key = f"{os.path.basename(sid)}_{e.object_category}"
        goals.setdefault(key, [
            {"object_id": g.object_id, "object_name": f"{g.category}_{g.object_id}", "object_category": g.category,
             "position": [float(v) for v in g.position], "radius": None, "room_id": None, "room_name": None,
             "view_points": [{"agent_state": {"position": [float(v) for v in vp], "rotation": [0.0, 0.0, 0.0, 1.0]},
                              "iou": None} for vp in g.view_points]}
            for g in e.goals])
        eps.append({"episode_id": e.episode_id, "scene_id": sid, "scene_dataset_config": "",
                    "additional_obj_config_paths": [], "start_position": [float(v) for v in e.start_position],
                    "start_rotation": [float(v) for v in e.start_rotation], "info": {"geodesic_distance": e.geodesic_distance},
                    "goals": [], "start_room": None, "shortest_paths": None, "object_category": e.object_category})
    cats = sorted({e.object_category for e in episodes})
    data = {"episodes": eps, "goals_by_category": goals,
            "category_to_task_category_id": {c: i for i, c in enumerate(cats)},
            "category_to_scene_annotation_category_id": {c: i for i, c in enumerate(cats)}}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(p, "wt") as f:
        json.dump(data, f)
    return p
