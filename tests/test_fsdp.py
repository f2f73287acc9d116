"""The transformer under real FSDP (torch's FullyShardedDataParallel, 2 CPU processes on gloo, wrapped by
the block class the 8-GPU config names): a one_way-attention training step matches the unwrapped model,
and the gathered full state dict holds whole tensors equal to the unwrapped model's after the step.

accelerate enables FSDP only on accelerators, so this drives torch's FSDP directly; the trainer gathers
through `accelerator.get_state_dict`, which on FSDP uses the same FULL_STATE_DICT mechanism."""
from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _worker() -> None:
    import torch.distributed as dist
    import yaml
    from accelerate.utils.dataclasses import get_module_class_from_name
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from models.transformer import V4STransformer

    dist.init_process_group("gloo")  # rank, world size and address from the environment the test sets
    torch.manual_seed(0)
    model = V4STransformer(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=8,
                           out_channels=8, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64,
                           camera_channels=6 * 2 * 2, context_attention="one_way")
    reference = copy.deepcopy(model)
    fsdp_cfg = yaml.safe_load((ROOT / "models/train_configs/fsdp_8gpu.yaml").read_text())["fsdp_config"]
    block_cls = get_module_class_from_name(model, fsdp_cfg["fsdp_transformer_layer_cls_to_wrap"])
    assert block_cls is not None, "the FSDP config names a class the transformer does not have"
    wrapped = FSDP(model, auto_wrap_policy=partial(transformer_auto_wrap_policy, transformer_layer_cls={block_cls}),
                   device_id=torch.device("cpu"), use_orig_params=True)
    full_size = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in model.parameters()) < full_size  # this process holds a shard
    g = torch.Generator().manual_seed(1)  # the same batch on both processes: FSDP's averaged gradient = one process's
    x = torch.randn(2, 8, 3, 8, 8, generator=g)
    text = torch.randn(2, 5, 32, generator=g)
    camera = torch.randn(2, 6, 2, 8, 8, generator=g)
    outs = []
    for m in (wrapped, reference):
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        out = m(x, torch.tensor([700.0, 300.0]), text, num_context_frames=1, camera=camera).sample
        out.square().mean().backward()
        opt.step()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1])
    full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
    expect = reference.state_dict()
    assert full.keys() == expect.keys()
    for k, v in expect.items():
        torch.testing.assert_close(full[k], v, msg=k)
    print(f"rank {dist.get_rank()} ok", flush=True)
    dist.destroy_process_group()


def test_one_way_attention_trains_under_fsdp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # the two ranks started directly (what torchrun would do, without its own process and imports)
    procs = [subprocess.Popen([sys.executable, __file__], cwd=ROOT, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for r, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0 and f"rank {r} ok" in out, err[-3000:]


if __name__ == "__main__":
    _worker()
