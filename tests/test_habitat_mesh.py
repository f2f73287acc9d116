"""`env=habitat` without habitat_sim, on real files we make: procedural apartments exported as .glb with
both semantic layouts (our sidecar, HM3D's .semantic.glb + .semantic.txt), a habitat-lab ObjectNav
.json.gz, MuJoCo renders compared with the embedded world at the same poses, the navigable grid
rasterised from the mesh, the CLI end to end, and one-line errors for broken inputs."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.base import make_env
from envs.embedded.world import EmbeddedWorld
from envs.errors import SceneError
from envs.habitat.config import HabitatConfig
from envs.habitat.episodes import read_objectnav, write_objectnav
from envs.habitat.factory import habitat_sim_importable
from envs.habitat.mesh_world import MeshWorld
from envs.habitat.procedural import export_episodes
from envs.habitat.scenefile import load_mesh_scene
from envs.types import Pose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One test-split apartment (.glb + sidecar + HM3D semantics) and its episode file."""
    out = tmp_path_factory.mktemp("habitat_scenes")
    eps = export_episodes(out, "test", 1, 0)
    (glb,) = sorted(out.glob("apartment_*[0-9].glb"))
    return out, glb, eps


@pytest.fixture(scope="module")
def worlds(exported):
    _, glb, _ = exported
    seed = int(glb.stem.split("_")[1])
    mesh = MeshWorld(HabitatConfig(scene=str(glb), renderer="mujoco", min_depth=0.0, max_depth=10.0))
    emb = EmbeddedWorld(scene_seed=seed)
    yield mesh, emb
    mesh.close()
    emb.close()


def _poses(world: EmbeddedWorld, n: int, seed: int = 0) -> list[Pose]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, z = world.navgrid.sample_navigable(rng)
        out.append(Pose((float(x), 0.88, float(z)), float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(-0.5, 0.5))))
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_renders_match_embedded_world_at_same_poses(worlds):
    mesh, emb = worlds
    for pose in _poses(emb, 6):
        a, b = mesh.render_at(pose), emb.render_at(pose)
        assert _psnr(a.rgb, b.rgb) >= 30.0
        assert float(np.mean(np.abs(a.depth - b.depth))) <= 0.01
        assert np.array_equal(a.semantic, b.semantic) and len(np.unique(a.semantic)) >= 1


def test_hm3d_semantic_layout_gives_the_same_instances(exported, tmp_path):
    """Without our sidecar the scene's ids come from .semantic.glb colours + .semantic.txt."""
    out, glb, _ = exported
    stem = glb.stem
    for suffix in (".glb", ".semantic.glb", ".semantic.txt"):
        shutil.copy(out / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    hm3d = load_mesh_scene(tmp_path / glb.name)
    ours = load_mesh_scene(glb)
    assert [(o.instance_id, o.category) for o in hm3d.objects] == [(o.instance_id, o.category) for o in ours.objects]
    for a, b in zip(hm3d.objects, ours.objects):
        assert np.allclose(a.aabb_min, b.aabb_min, atol=1e-4) and np.allclose(a.aabb_max, b.aabb_max, atol=1e-4)
    assert sorted(hm3d.instances) == sorted(ours.instances)
    for iid in ours.instances:
        assert len(hm3d.instances[iid][1]) == len(ours.instances[iid][1])


def test_navgrid_from_mesh_matches_embedded_grid(worlds):
    mesh, emb = worlds
    a, b = mesh.navgrid, emb.navgrid
    off = np.round((a.origin - b.origin) / b.res).astype(int)
    sub = b.navigable[off[1] : off[1] + a.shape[0], off[0] : off[0] + a.shape[1]]
    assert sub.shape == a.shape
    differ = np.count_nonzero(sub != a.navigable)
    assert differ <= 0.01 * np.count_nonzero(sub), differ  # cells at the edge of thin parts
    rng = np.random.default_rng(1)
    for _ in range(5):  # geodesics agree (the grids share cell corners)
        p, q = b.sample_navigable(rng), b.sample_navigable(rng)
        assert abs(a.geodesic_distance(p, q) - b.geodesic_distance(p, q)) <= 0.15
    # collisions: a forward move into a wall is refused
    x, z = b.sample_navigable(rng)
    assert not a.segment_free((x, z), (x, z + 50.0))


def test_episode_file_round_trip_and_habitat_lab_layout(exported, tmp_path):
    _, glb, path = exported
    (ep,) = read_objectnav(path)
    with gzip.open(path, "rt") as f:
        raw = json.load(f)
    e = raw["episodes"][0]
    assert {"episode_id", "scene_id", "start_position", "start_rotation", "object_category", "info"} <= set(e)
    goals = raw["goals_by_category"][f"{Path(e['scene_id']).name}_{e['object_category']}"]
    assert goals and all(len(g["view_points"]) > 0 and "agent_state" in g["view_points"][0] for g in goals)
    assert Path(ep.scene_id) == glb and abs(ep.start_position[1]) < 1e-9  # body on the floor
    again = read_objectnav(write_objectnav(tmp_path / "x.json.gz", [ep]))[0]
    assert again.episode_id == ep.episode_id and again.object_category == ep.object_category
    assert np.allclose(again.start_rotation, ep.start_rotation) and abs(again.start_yaw - ep.start_yaw) < 1e-9
    assert [g.object_id for g in again.goals] == [g.object_id for g in ep.goals]
    assert np.allclose(again.goals[0].view_points, ep.goals[0].view_points)
    from envs.embedded.task import make_episodes

    (emb_ep,) = make_episodes("test", 1, 0)  # the file holds the embedded world's episode
    assert ep.episode_id == emb_ep.episode_id and abs(ep.start_yaw - emb_ep.start.yaw) < 1e-9


def test_cli_env_habitat_oracle_end_to_end_and_missing_scene_skipped(exported, tmp_path):
    out_dir, glb, path = exported
    (ep,) = read_objectnav(path)
    gone = ep.__class__(**{**ep.__dict__, "episode_id": "gone", "scene_id": str(tmp_path / "gone.glb")})
    eps = write_objectnav(tmp_path / "eps.json.gz", [gone, ep])
    out = tmp_path / "run"
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    p = subprocess.run([sys.executable, "-m", "v4s_agent.run", "env=habitat", f"env.config.episodes_file={eps}",
                        "planner=oracle", "model=none", "episodes=2", "max_steps=30", f"output_dir={out}", "progress=false"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "renders with MuJoCo" in p.stderr and "gone.glb" in p.stderr and "skipping" in p.stderr
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["episode_id"] for r in recs] == [ep.episode_id]
    stem = "episode_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in ep.episode_id)
    (mp4,) = out.glob(f"{stem}-success=*-spl=*.mp4")
    assert (out / f"{stem}.rrd").stat().st_size > 1000 and mp4.stat().st_size > 1000


@pytest.mark.skipif(habitat_sim_importable(), reason="habitat_sim imports: auto picks it")
def test_auto_renderer_falls_back_with_one_notice(exported, capsys):
    _, glb, _ = exported
    env = make_env("habitat", {"scene": str(glb), "width": 32, "height": 32})
    try:
        assert isinstance(env, MeshWorld)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "MuJoCo" in err[0]
        obs = env.reset(seed=0)
        assert obs.rgb.shape == (32, 32, 3) and obs.semantic is not None
    finally:
        env.close()


def _glb_bytes(doc: dict) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    return b"glTF" + struct.pack("<II", 2, 12 + 8 + len(js)) + struct.pack("<I", len(js)) + b"JSON" + js


def _one_line(e: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_bad_inputs_give_one_line(exported, tmp_path, worlds):
    out_dir, glb, path = exported
    bad = tmp_path / "corrupt.glb"
    bad.write_bytes(glb.read_bytes()[:5000])
    with pytest.raises(SceneError) as e:
        load_mesh_scene(bad)
    _one_line(e, "corrupt.glb", "re-export")
    basis = tmp_path / "scan.basis.glb"
    basis.write_bytes(_glb_bytes({"asset": {"version": "2.0"}, "extensionsUsed": ["KHR_texture_basisu"]}))
    with pytest.raises(SceneError) as e:
        load_mesh_scene(basis)
    _one_line(e, "scan.basis.glb", "KHR_texture_basisu", "habitat_sim")
    lone = tmp_path / glb.name
    shutil.copy(glb, lone)  # no semantic file beside it
    with pytest.raises(SceneError) as e:
        load_mesh_scene(lone)
    _one_line(e, glb.name, ".semantic.json", ".semantic.txt")
    (ep,) = read_objectnav(path)
    unknown = write_objectnav(tmp_path / "unknown.json.gz", [ep.__class__(**{**ep.__dict__, "object_category": "piano"})])
    mesh, _ = worlds
    with pytest.raises(SceneError) as e:
        mesh.load_episodes(unknown)
    _one_line(e, "piano", "unknown.json.gz")
    junk = tmp_path / "junk.json.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(SceneError) as e:
        read_objectnav(junk)
    _one_line(e, "junk.json.gz", "gzip")
    # and the CLI turns one of them into one line + exit 2
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    p = subprocess.run([sys.executable, "-m", "v4s_agent.run", "env=habitat", f"env.config.episodes_file={junk}",
                        "planner=oracle", "model=none", f"output_dir={tmp_path / 'r'}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "junk.json.gz" in errors[0] and "Traceback" not in p.stderr


def test_bench_habitat_prints_one_json_line(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl"}
    p = subprocess.run([sys.executable, "-m", "v4s_agent.bench", "habitat", "steps=10", "block=5", "size=32"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    (line,) = p.stdout.strip().splitlines()
    r = json.loads(line)
    assert r["steps"] == 10 and r["embedded_steps_per_s"] > 0 and r["habitat_mujoco_steps_per_s"] > 0
    assert r["same_final_pose"] is True  # both worlds walked the same actions to the same place


def test_floor_grid_two_storeys_furniture_and_walls():
    """A two-storey box house: the ground floor is found by itself, the upper one when asked; a table
    blocks its footprint, a wall blocks a line, and the slab above does not block the floor below."""
    import trimesh

    from envs.habitat.floorgrid import floor_height, free_floor

    def box(lo, hi):
        b = trimesh.creation.box(bounds=np.array([lo, hi], dtype=float))
        return b.vertices, b.faces

    parts = [box((0, -0.1, 0), (4, 0, 4)),  # ground slab (top at y = 0)
             box((0, 3.0, 0), (4, 3.1, 4)),  # upper slab (top at y = 3.1)
             box((1.0, 0, 1.0), (1.6, 0.75, 1.6)),  # a table on the ground floor
             box((2.0, 0, 0), (2.1, 2.5, 3.0)),  # a wall with a 1 m gap at z in [3, 4]
             box((1.0, 3.1, 2.5), (1.5, 4.0, 3.0))]  # a cupboard upstairs
    vs, fs, n = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + n)
        n += len(v)
    v, f = np.concatenate(vs), np.concatenate(fs)
    assert floor_height(v, f) == 0.0
    free, origin, fy = free_floor(v, f, 0.05, 0.88)
    assert fy == 0.0

    def at(x, z, grid=free):
        return bool(grid[int((z - origin[1]) // 0.05), int((x - origin[0]) // 0.05)])

    assert at(0.5, 0.5) and at(3.0, 2.0) and at(2.05, 3.5)  # open floor, beyond the wall, the gap
    assert not at(1.3, 1.3) and not at(2.05, 1.0)  # under the table, inside the wall
    up, _, fy_up = free_floor(v, f, 0.05, 0.88, floor_y=3.1)
    assert fy_up == 3.1 and at(1.3, 1.3, up) and at(2.05, 1.0, up) and not at(1.25, 2.75, up)


def test_split_file_with_content_folder(exported, tmp_path):
    """habitat-lab's split layout: {split}/{split}.json.gz with no episodes + content/<scene>.json.gz."""
    _, glb, path = exported
    (ep,) = read_objectnav(path)
    split_dir = tmp_path / "val"
    write_objectnav(split_dir / "val.json.gz", [])
    write_objectnav(split_dir / "content" / "apartment.json.gz", [ep.__class__(**{**ep.__dict__, "scene_id": glb.name})],
                    scenes_dir=None)
    (got,) = read_objectnav(tmp_path / "{split}" / "{split}.json.gz", split="val", scenes_dir=glb.parent)
    assert Path(got.scene_id) == glb and got.episode_id == ep.episode_id and len(got.goals) == len(ep.goals)


def test_procedural_export_cli_bad_argument_is_one_line():
    env = {**os.environ, "MUJOCO_GL": "egl"}
    p = subprocess.run([sys.executable, "-m", "envs.habitat.procedural", "out_dir=/nonexistent/x", "episodes=many"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "episodes" in p.stderr, p.stderr
