"""scripts/: the ``accelerate launch`` script on two CPU processes (DDP over gloo).
(The 0.5B-shape training script: tests/test_train_qwen05b_shape.py.)"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import TrainConfig, load_checkpoint, load_records
from helpers.memory import estimate_training_memory

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
ACCELERATE = Path(sys.executable).parent / "accelerate"
TINY_PARAMS = 9_847_360
sys.path.insert(0, str(SCRIPTS))

import accelerate_train  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_accelerate_configs_parse_and_name_real_classes():
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers.models.qwen2 import modeling_qwen2

    ddp = load_config_from_file(str(SCRIPTS / "accelerate" / "ddp.yaml"))
    fsdp = load_config_from_file(str(SCRIPTS / "accelerate" / "fsdp.yaml"))
    assert str(ddp.distributed_type).endswith("MULTI_GPU") and ddp.num_processes == 2
    assert str(fsdp.distributed_type).endswith("FSDP")
    assert fsdp.fsdp_config["fsdp_version"] == 2
    assert hasattr(modeling_qwen2, fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"])


def test_accelerate_launch_trains_ddp_on_two_cpu_processes(tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts ONE process (the simple launcher; see
    # test_accelerate_launch_cpu_starts_one_process). The torchrun-based launcher of ddp.yaml
    # starts two, and ACCELERATE_USE_CPU=true makes the Trainer's accelerator run them on the
    # CPU over gloo.
    epochs = 2
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [str(ACCELERATE), "launch", "--config_file", str(SCRIPTS / "accelerate" / "ddp.yaml"),
         "--num_processes", "2", "--main_process_port", str(free_port()),
         str(SCRIPTS / "accelerate_train.py"), "--epochs", str(epochs), "--output-dir", str(tmp_path / "sft")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = last_json_line(out.stdout)
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["distributed_type"] == "MULTI_CPU" and result["device"] == "cpu"
    # the recipe's batch is shared between the processes: the global batch, and so the steps
    # per epoch, are the notebook's (one process, batch 2: 3 steps for 5 records)
    batch = TrainConfig().per_device_train_batch_size
    assert result["per_device_train_batch_size"] == batch // 2 and result["global_train_batch_size"] == batch
    assert result["steps"] == epochs * math.ceil(len(load_records()) / batch)
    assert "note:" not in out.stderr  # 2 processes divide the batch: nothing to warn about
    assert len(result["epoch_losses"]) == epochs and result["epoch_losses"][-1] < result["epoch_losses"][0]
    digests = result["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # DDP replicas stayed identical
    saved = load_checkpoint(tmp_path / "sft")  # the main process saved model + tokenizer
    saved_digest = accelerate_train.weights_digest(saved.model.state_dict())
    assert saved_digest == digests[0]


def test_accelerate_launch_cpu_starts_one_process(monkeypatch):
    """What the script's docstring says about ``--cpu``: accelerate 1.15 sends it to the simple
    launcher (one ``python`` process, whatever --num_processes says, with or without a DDP
    config), which goes through mpirun only when --mpirun_hostfile is given."""
    from accelerate.commands import launch
    from accelerate.utils import launch as launch_utils

    used = []
    for name in ("simple_launcher", "multi_gpu_launcher", "deepspeed_launcher"):
        monkeypatch.setattr(launch, name, lambda args, name=name: used.append(name))
    parser = launch.launch_command_parser()
    for config in ([], ["--config_file", str(SCRIPTS / "accelerate" / "ddp.yaml")]):
        launch.launch_command(parser.parse_args(["--cpu", "--num_processes", "2", *config, "train.py"]))
    assert used == ["simple_launcher", "simple_launcher"]
    args = parser.parse_args(["--cpu", "--num_processes", "2", "train.py"])
    launch._validate_launch_command(args)
    cmd, env = launch_utils.prepare_simple_launcher_cmd_env(args)
    assert cmd == [sys.executable, "train.py"] and env["ACCELERATE_USE_CPU"] == "True"  # one process
    monkeypatch.setattr(launch_utils, "_get_mpirun_args", lambda: ("mpirun", "-f", "-n", "-ppn", ""))
    args = parser.parse_args(["--cpu", "--num_processes", "2", "--mpirun_hostfile", "hosts", "train.py"])
    launch._validate_launch_command(args)
    cmd, _ = launch_utils.prepare_simple_launcher_cmd_env(args)
    assert cmd[0] == "mpirun" and cmd[-2:] == [sys.executable, "train.py"]
    assert "only when ``--mpirun_hostfile`` is given" in accelerate_train.__doc__


def test_ddp_keeps_a_gradient_sized_bucket_copy(tokenizer, monkeypatch):
    """DDP's all-reduce buckets hold a second copy of the gradients (4 bytes/parameter in
    fp32) because gradient_as_bucket_view is False: torch's default, accelerate's, and the
    Trainer never sets it. So about 20 bytes/parameter per GPU, not 16 (ddp.yaml, docstring)."""
    import inspect

    import torch.distributed as dist
    import transformers.trainer
    from accelerate.utils import DistributedDataParallelKwargs

    from helpers import count_parameters, load_model

    assert inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters["gradient_as_bucket_view"].default is False
    assert DistributedDataParallelKwargs().gradient_as_bucket_view is False
    assert "gradient_as_bucket_view" not in inspect.getsource(transformers.trainer)
    for name, value in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1").items():
        monkeypatch.setenv(name, value)
    dist.init_process_group("gloo")
    try:
        model = load_model(tokenizer=tokenizer, seed=0)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        logged = ddp._get_ddp_logging_data()
    finally:
        dist.destroy_process_group()
    bucket_bytes = sum(int(size) for size in str(logged["bucket_sizes"]).split(","))
    assert logged["gradient_as_bucket_view"] == 0
    assert bucket_bytes == 4 * count_parameters(model) == 4 * TINY_PARAMS  # one more fp32 gradient
    ddp_yaml = (SCRIPTS / "accelerate" / "ddp.yaml").read_text()
    assert "about 20 bytes per parameter per GPU" in ddp_yaml
    assert "About 20 bytes/parameter per GPU" in accelerate_train.__doc__


def test_per_process_batch_keeps_the_global_batch_or_says_what_it_becomes():
    assert accelerate_train.per_process_batch(2, 1) == 2
    assert accelerate_train.per_process_batch(2, 2) == 1  # global batch 2, as in the notebook
    assert accelerate_train.per_process_batch(2, 4) == 1  # global batch 4: the script warns
    assert accelerate_train.per_process_batch(8, 3) == 3
    with pytest.raises(ValueError, match="at least 1"):
        accelerate_train.per_process_batch(2, 0)


def test_accelerate_gives_fsdp2_bf16_gradient_reduction():
    """What the docstring and fsdp.yaml say: with bf16, FSDP2 computes in bf16, casts each
    sharded module's outputs to bf16 and reduce-scatters gradients in bf16."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    plugin.set_mixed_precision("bf16")  # what AcceleratorState does when the Trainer asks for bf16
    policy = plugin.mixed_precision_policy
    assert policy.param_dtype == policy.reduce_dtype == policy.output_dtype == torch.bfloat16
    said = "MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16, output_dtype=bf16)"
    assert said in " ".join(accelerate_train.__doc__.split())
    fsdp_yaml = " ".join(line.lstrip("# ") for line in (SCRIPTS / "accelerate" / "fsdp.yaml").read_text().splitlines())
    assert said in fsdp_yaml


def test_fsdp_sharded_weights_are_gathered_and_saved_whole(tokenizer, tmp_path, monkeypatch):
    """The FSDP save path of accelerate_train.py, on one gloo process: accelerate itself
    will not run FSDP on CPU processes, but FSDP2's fully_shard does."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from helpers import load_model, save_checkpoint

    for name, value in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1").items():
        monkeypatch.setenv(name, value)
    dist.init_process_group("gloo")
    try:
        model = load_model(tokenizer=tokenizer, seed=5)
        original = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        assert not accelerate_train.is_sharded(model)
        mesh = init_device_mesh("cpu", (1,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        assert accelerate_train.is_sharded(model)
        state_dict = accelerate_train.gathered_state_dict(model)
        assert all(torch.equal(state_dict[name], original[name]) for name in original)
        save_checkpoint(model, tokenizer, tmp_path / "fsdp", state_dict=state_dict)
    finally:
        dist.destroy_process_group()
    # one ordinary weights file (what fsdp.yaml says), from the explicitly gathered state dict
    assert sorted(p.name for p in (tmp_path / "fsdp").glob("model*.safetensors*")) == ["model.safetensors"]
    reloaded = load_checkpoint(tmp_path / "fsdp").model.state_dict()
    assert all(torch.equal(reloaded[name], original[name]) for name in original)
