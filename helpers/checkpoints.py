"""The two checkpoints of the series: where they live, how they are trained, saved and loaded.

Introduced in notebook 04_full_parameter_training, which trains a pretraining (预训练) model
and an SFT (有监督微调) model from the same initial weights and saves both; notebook
05_inference loads them, or, when they are missing or unusable, trains them itself through
the same functions, so each notebook also runs on its own.

A checkpoint directory holds what ``save_pretrained`` writes plus ``checkpoint_record.json``:
what produced it (objective, model setting, recipe, seed, a hash of the records, the collator's
options, the device type and the training precision), what the run
measured (its loss per epoch, optimizer steps and seconds: notebooks 06 and 07 compare their own
runs with 04's without training it again) and the size and sha256 of every file. Saving is atomic (a staging directory, renamed into place), so a
killed kernel never leaves a directory that looks complete, and :func:`load_or_train` loads a
checkpoint only when its files match the record and the record matches the run asked for now,
field by field: never a raw deserialisation traceback, never a model whose recorded objective,
model setting, recipe, seed, records, collator options, device type (``cpu``, ``cuda``...) or
training precision differ from this run's. What the record does not compare: the library
versions (recorded, not checked), and the machine beyond its device type (which CPU or GPU
model, how many threads), so a loaded checkpoint's seconds come from the machine that trained it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers.utils import logging as hf_logging

from .collators import PretrainCollator, SFTCollator
from .model import load_model
from .settings import MODEL_ENV_VAR, ModelSettingError, describe_source, model_setting, outputs_dir, shown
from .tokenizer import load_tokenizer
from .training import TrainConfig, TrainResult, train, training_arguments

#: Where the checkpoints go: ``outputs/`` in the project, or ``$PVS_OUTPUTS`` (read at import).
DEFAULT_OUTPUTS = outputs_dir()
#: The two training objectives and the collator that defines each.
COLLATORS = {"pretrain": PretrainCollator, "sft": SFTCollator}
#: The recipe for a model that is already pretrained (``$PVS_MODEL`` set): the
#: post's own run, the one it reports a result for (its ``TrainingArguments`` set
#: ``num_train_epochs=10, per_device_train_batch_size=2`` and leave the rest at transformers'
#: defaults: learning rate 5e-5 with linear decay, no warm-up, no weight decay; after it the
#: fine-tuned Qwen2.5-0.5B recites the first poem from its instruction). The tiny default
#: trains from random weights with :class:`TrainConfig`'s far higher rate.
PRETRAINED_RECIPE = TrainConfig(
    num_train_epochs=10, per_device_train_batch_size=2, learning_rate=5e-5, lr_scheduler_type="linear",
    warmup_steps=0, weight_decay=0.0,
)
PRETRAINED_LEARNING_RATE = PRETRAINED_RECIPE.learning_rate
#: The file in each checkpoint directory that says what produced it and what it holds.
RECORD_FILE = "checkpoint_record.json"
#: Bump when the record's meaning changes: older checkpoints are then retrained, not trusted.
#: Format 2 added ``result`` (the run's losses, steps and seconds); format 3 added ``collator``
#: (its ``append_eos`` and ``mask_pad``) and ``environment`` (device type and precision).
RECORD_FORMAT = 3
#: Files a directory needs to count as a complete checkpoint (model + tokenizer + record).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json", RECORD_FILE)

# What train_both trained each model on, and what that run measured, until save_checkpoint
# writes both into the record. Weak keys: the entries go away with the model.
_TRAINED_ON: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
_RESULTS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
# load_or_train's default for ``model_name``: the model ``$PVS_MODEL`` names.
_FROM_SETTING = object()


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be used: the message names the directory and the problem.

    >>> from helpers import PROJECT_ROOT
    >>> print(CheckpointError(PROJECT_ROOT / "outputs" / "sft", "model.safetensors is missing"))
    outputs/sft: model.safetensors is missing
    """

    def __init__(self, directory: str | os.PathLike, problem: str):
        self.directory = Path(directory)
        self.problem = problem
        super().__init__(f"{shown(self.directory)}: {problem}")


@dataclass
class Checkpoint:
    """A trained model with the tokenizer it was trained with, and the directory it came from.

    Returned by :func:`load_checkpoint` (notebook 04_full_parameter_training) and
    :func:`load_or_train` (notebook 05_inference).

    >>> Checkpoint(model=None, tokenizer=None, path=Path("outputs/sft")).epoch_losses is None  # no record read
    True
    """

    model: object
    tokenizer: object
    path: Path
    epoch_losses: list[float] | None = None  # the training run's mean loss per epoch (from the record)
    steps: int | None = None  # its optimizer steps
    seconds: float | None = None  # its wall time in trainer.train(), on the machine that trained it


def checkpoint_dirs(root: str | os.PathLike = DEFAULT_OUTPUTS) -> dict[str, Path]:
    """``{"pretrain": root/pretrain, "sft": root/sft}``.

    Introduced in notebook 04_full_parameter_training.

    >>> from helpers import PROJECT_ROOT
    >>> {name: shown(path) for name, path in checkpoint_dirs(PROJECT_ROOT / "outputs").items()}
    {'pretrain': 'outputs/pretrain', 'sft': 'outputs/sft'}
    """
    return {objective: Path(root) / objective for objective in COLLATORS}


def recipe(model_name: str | None = None) -> TrainConfig:
    """The training recipe for the model the series uses.

    Introduced in notebook 04_full_parameter_training. The tiny default (``model_name``
    None) trains from random weights with :class:`TrainConfig`'s defaults; a pretrained model
    (``$PVS_MODEL``) gets :data:`PRETRAINED_RECIPE`, the post's run (10 epochs,
    batch 2, learning rate 5e-5 decaying linearly), since a learning rate as high as the tiny
    model's would wreck what it already knows.

    >>> recipe() == TrainConfig(), recipe("Qwen/Qwen2.5-0.5B").learning_rate
    (True, 5e-05)
    """
    return TrainConfig() if model_name is None else PRETRAINED_RECIPE


def records_sha256(records) -> str:
    """sha256 of the records as canonical JSON (sorted keys, no extra spaces, UTF-8).

    Introduced in notebook 05_inference. It changes when any record's content changes, and
    not when only the data file's formatting does.

    >>> records_sha256([{"b": 1, "a": "诗"}]) == records_sha256([{"a": "诗", "b": 1}])  # key order is formatting
    True
    """
    canonical = json.dumps(records, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def collator_options(collator) -> dict:
    """The options of a collator (or, given its class, its defaults) that change which tokens are
    trained: ``{"append_eos": ..., "mask_pad": ...}`` (``max_length`` only refuses long records).

    >>> collator_options(SFTCollator)
    {'append_eos': True, 'mask_pad': 'position'}
    """
    return {"append_eos": collator.append_eos, "mask_pad": collator.mask_pad}


def training_environment(config: TrainConfig) -> dict:
    """Where :func:`helpers.training.train` trains with ``config`` on this machine, read from the
    ``TrainingArguments`` it builds: ``{"device": "cpu" | "cuda" | "mps" ..., "precision":
    "bf16" | "fp16" | "fp32"}``. ``"bf16"`` is the ``Trainer``'s bf16 autocast (what
    :func:`~helpers.training.training_arguments` sets on a GPU that supports it) over fp32 weights.

    >>> environment = training_environment(TrainConfig())
    >>> sorted(environment), environment["device"] in ("cpu", "cuda", "mps", "xpu")
    (['device', 'precision'], True)
    """
    with tempfile.TemporaryDirectory() as scratch:
        arguments = training_arguments(config, scratch)
    precision = "bf16" if arguments.bf16 else "fp16" if arguments.fp16 else "fp32"
    return {"device": arguments.device.type, "precision": precision}


def training_record(
    objective: str, model_name: str | None, config: TrainConfig, records, seed: int, collator=None,
    environment: dict | None = None,
) -> dict:
    """What a checkpoint must have been trained with to count as the run ``load_or_train`` asks for.

    Introduced in notebook 05_inference. ``print_loss`` is left out: it changes nothing in
    the weights. ``collator`` (default: the objective's collator class, i.e. its default
    options) gives :func:`collator_options`; ``environment`` defaults to
    :func:`training_environment` on this machine.

    >>> from helpers import load_records
    >>> record = training_record("sft", None, TrainConfig(), load_records(), seed=0)
    >>> sorted(record), record["collator"]
    (['collator', 'environment', 'model_setting', 'objective', 'recipe', 'records_sha256', 'seed'], {'append_eos': True, 'mask_pad': 'position'})
    """
    fields = asdict(config)
    fields.pop("print_loss")
    return {
        "objective": objective,
        "model_setting": model_name,
        "recipe": fields,
        "seed": seed,
        "records_sha256": records_sha256(records),
        "collator": collator_options(COLLATORS[objective] if collator is None else collator),
        "environment": training_environment(config) if environment is None else environment,
    }


def library_versions() -> dict[str, str]:
    """The versions of the libraries that train, save and load a checkpoint (for the record).

    >>> sorted(library_versions())
    ['safetensors', 'tokenizers', 'torch', 'transformers']
    """
    import safetensors
    import tokenizers
    import torch
    import transformers

    return {module.__name__: module.__version__ for module in (torch, transformers, tokenizers, safetensors)}


def train_both(
    tokenizer, records, config: TrainConfig | None = None, model_name=_FROM_SETTING, seed: int = 0
) -> dict[str, TrainResult]:
    """Train one model per objective (pretraining, SFT), each from the same initial weights.

    Introduced in notebook 04_full_parameter_training. Both runs load their model with
    ``load_model(model_name, tokenizer, seed=seed)`` (the same weights) and train with
    :func:`helpers.training.train` and the same ``config`` (default: :func:`recipe`), so
    the collator is the only difference. ``model_name`` defaults to ``model_setting()``
    (``None`` is the tiny model). Each trained model remembers what it was trained on (the
    collator's options, the device type and precision included), and :func:`save_checkpoint`
    writes that into its checkpoint's record.
    """
    model_name = model_setting() if model_name is _FROM_SETTING else model_name
    config = recipe(model_name) if config is None else config
    environment = training_environment(config)
    results = {}
    for objective, collator_class in COLLATORS.items():
        if config.print_loss:
            print(f"--- {objective} ---")
        model = load_model(model_name, tokenizer, seed=seed)
        collator = collator_class(tokenizer)
        results[objective] = train(model, tokenizer, records, collator, config)
        _TRAINED_ON[results[objective].model] = training_record(
            objective, model_name, config, records, seed, collator=collator, environment=environment)
        _RESULTS[results[objective].model] = result_record(results[objective])
    return results


def result_record(result: TrainResult) -> dict:
    """What a training run measured, as stored in a checkpoint's record (notebook 04_full_parameter_training).

    >>> result_record(TrainResult(model=None, epoch_losses=[9.5, 4.25], steps=6, seconds=1.5))
    {'epoch_losses': [9.5, 4.25], 'steps': 6, 'seconds': 1.5}
    """
    return {"epoch_losses": list(result.epoch_losses), "steps": result.steps, "seconds": result.seconds}


@contextmanager
def _no_progress_bars():
    """Hide transformers' per-file progress bars ("Writing model shards", "Loading weights"):
    a checkpoint this small is one file read or written at once, and the bars' timings would
    make the notebooks' stored outputs differ from run to run."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _leftovers(directory: Path) -> list[Path]:
    """Staging or replaced directories an interrupted :func:`save_checkpoint` left beside ``directory``."""
    if not directory.parent.is_dir():
        return []
    return sorted(directory.parent.glob(f".{directory.name}.staging-*")) + sorted(
        directory.parent.glob(f".{directory.name}.replaced-*")
    )


def save_checkpoint(
    model, tokenizer, directory: str | os.PathLike, state_dict=None, training: dict | None = None, result: dict | None = None
) -> list[str]:
    """Save ``model`` and ``tokenizer`` with ``save_pretrained``, atomically, with a record;
    returns the file names written.

    Introduced in notebook 04_full_parameter_training. The weights go to
    ``model.safetensors``. Everything is written into a staging directory beside
    ``directory`` and renamed into place at the end, so ``directory`` is either the old
    checkpoint or the complete new one (a save killed halfway leaves only a hidden staging
    directory, which the next save removes). ``checkpoint_record.json`` holds ``training``
    (default: what :func:`train_both` trained this model on, or None), ``result`` (default: what
    that run measured, :func:`result_record`, or None), the library versions, and each file's
    size and sha256. ``state_dict`` replaces the model's own
    (``scripts/accelerate_train.py`` passes the gathered weights of an FSDP-sharded model).

    A round trip with the tiny untrained model (a few seconds):

    >>> from helpers import load_model, load_tokenizer
    >>> tokenizer = load_tokenizer()
    >>> with tempfile.TemporaryDirectory() as scratch:
    ...     directory = Path(scratch) / "sft"
    ...     written = save_checkpoint(load_model(tokenizer=tokenizer), tokenizer, directory)
    ...     intact, record = has_checkpoint(directory), read_record(directory)
    ...     same_tokenizer = saves_as(tokenizer, directory) and same_tokenizer_files(directory, directory)
    ...     loaded = load_checkpoint(directory, tokenizer)
    >>> sorted(set(written) - set(record["files"])), intact, same_tokenizer, record["training"]
    (['checkpoint_record.json'], True, True, None)
    >>> type(loaded.model).__name__, loaded.model.training, loaded.steps
    ('Qwen2ForCausalLM', False, None)
    """
    directory = Path(directory)
    training = _TRAINED_ON.get(model) if training is None else training
    result = _RESULTS.get(model) if result is None else result
    directory.parent.mkdir(parents=True, exist_ok=True)
    for leftover in _leftovers(directory):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.staging-", dir=directory.parent))
    try:
        with _no_progress_bars():
            model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        files = {
            path.name: {"bytes": path.stat().st_size, "sha256": _sha256_of(path)}
            for path in sorted(staging.iterdir()) if path.is_file()
        }
        record = {"format": RECORD_FORMAT, "training": training, "result": result, "versions": library_versions(),
                  "files": files}
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        replaced = None
        if directory.exists():
            replaced = directory.with_name(f".{directory.name}.replaced-{uuid.uuid4().hex[:8]}")
            os.replace(directory, replaced)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def read_record(directory: str | os.PathLike) -> dict:
    """The parsed ``checkpoint_record.json`` of ``directory``.

    Introduced in notebook 05_inference. Raises :class:`CheckpointError` naming the
    directory when it is missing or unreadable.

    >>> from helpers import PROJECT_ROOT
    >>> try:
    ...     read_record(PROJECT_ROOT / "data")
    ... except CheckpointError as error:
    ...     print(error.problem[:46])
    has no checkpoint_record.json (saved before ch
    """
    path = Path(directory) / RECORD_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            directory, f"has no {RECORD_FILE} (saved before checkpoints carried a record, or not by "
            "save_checkpoint), so what it holds and was trained on is unknown"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(directory, f"{RECORD_FILE} is unreadable ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or not isinstance(record.get("files"), dict):
        raise CheckpointError(directory, f"{RECORD_FILE} is not a format-{RECORD_FORMAT} record")
    return record


def checkpoint_problem(directory: str | os.PathLike, expected_training: dict | None = None) -> str | None:
    """Why ``directory`` is not a usable checkpoint, in a few words, or None when it is.

    Introduced in notebook 05_inference. Checks that the directory and its record exist,
    that every file the record lists is there with its recorded size and sha256 (a truncated
    or overwritten file fails here, before any deserialiser sees it), and, when
    ``expected_training`` is given (a :func:`training_record`), that the checkpoint was
    trained with exactly that: objective, ``PVS_MODEL`` setting, recipe, seed, records,
    collator options, device type and precision.

    >>> from helpers import PROJECT_ROOT
    >>> checkpoint_problem(PROJECT_ROOT / "no-such-folder")
    'does not exist'
    >>> checkpoint_problem(PROJECT_ROOT / "data")[:30]
    'has no checkpoint_record.json '
    """
    directory = Path(directory)
    if not directory.is_dir():
        interrupted = _leftovers(directory)
        note = f" (an interrupted save left {interrupted[0].name})" if interrupted else ""
        return f"does not exist{note}"
    try:
        record = read_record(directory)
    except CheckpointError as exc:
        return exc.problem
    for name in REQUIRED_FILES:
        if name != RECORD_FILE and name not in record["files"]:
            return f"its record lists no {name}"
    for name, expected in record["files"].items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected.get("bytes"):
            return f"{name} has {size:,} bytes, its record says {expected.get('bytes'):,} (truncated or overwritten)"
        if _sha256_of(path) != expected.get("sha256"):
            return f"{name} does not match the sha256 in its record (changed after it was saved)"
    if expected_training is None:
        return None
    return _training_mismatch(record.get("training"), json.loads(json.dumps(expected_training)))


def _training_mismatch(found: dict | None, expected: dict) -> str | None:
    if not isinstance(found, dict):
        return "its record does not say how it was trained (not saved from train_both)"
    if found.get("objective") != expected["objective"]:
        return f"holds a {found.get('objective')!r} checkpoint, not {expected['objective']!r}"
    if found.get("model_setting") != expected["model_setting"]:
        def show(value):
            return "unset (the tiny default)" if value is None else repr(value)
        return (f"was trained with {MODEL_ENV_VAR} {show(found.get('model_setting'))}, "
                f"now {MODEL_ENV_VAR} is {show(expected['model_setting'])}")
    if found.get("records_sha256") != expected["records_sha256"]:
        return (f"was trained on other records (sha256 {str(found.get('records_sha256'))[:12]}..., "
                f"the data now gives {expected['records_sha256'][:12]}...)")
    if found.get("recipe") != expected["recipe"]:
        return f"was trained with another recipe ({_changes(found.get('recipe'), expected['recipe'])})"
    if found.get("seed") != expected["seed"]:
        return f"was trained from seed {found.get('seed')!r}, not {expected['seed']!r}"
    for key, what in (("collator", "other collator options"), ("environment", "another device or precision")):
        if found.get(key) != expected[key]:
            return f"was trained with {what} ({_changes(found.get(key), expected[key])})"
    return None


def _changes(found, expected: dict) -> str:
    """``"key old -> new"`` for every key whose value differs between two records' dicts."""
    old = found if isinstance(found, dict) else {}
    changed = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in expected.items() if old.get(key) != value]
    changed += [f"{key} {old[key]!r} -> (none)" for key in old if key not in expected]
    return ", ".join(changed)


def has_checkpoint(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete, intact checkpoint: a record, and every file it
    lists with the recorded size and sha256.

    Introduced in notebook 05_inference. It does not say what the checkpoint was trained on:
    :func:`load_or_train` checks that too.

    >>> from helpers import PROJECT_ROOT
    >>> has_checkpoint(PROJECT_ROOT / "data"), has_checkpoint(PROJECT_ROOT / "no-such-folder")
    (False, False)
    """
    return checkpoint_problem(directory) is None


#: The files ``tokenizer.save_pretrained`` writes; two checkpoints whose records give them the
#: same sha256 hold the same tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def same_tokenizer_files(directory_a: str | os.PathLike, directory_b: str | os.PathLike) -> bool:
    """Whether two intact checkpoints' records list the same tokenizer files with the same sha256."""
    files_a, files_b = (read_record(d)["files"] for d in (directory_a, directory_b))
    return all(files_a.get(name) == files_b.get(name) for name in TOKENIZER_FILES)


def saves_as(tokenizer, directory: str | os.PathLike) -> bool:
    """Whether ``tokenizer.save_pretrained`` writes exactly the tokenizer files (same sha256) that
    the intact checkpoint ``directory`` holds: then it is the checkpoint's tokenizer, and saving it
    (well under a second) spares loading the directory's (seconds for 151,665 tokens)."""
    recorded = read_record(directory)["files"]
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        return all(
            (recorded.get(name) or {}).get("sha256") == (_sha256_of(Path(scratch) / name) if (Path(scratch) / name).is_file() else None)
            for name in TOKENIZER_FILES
        )


def load_checkpoint(directory: str | os.PathLike, tokenizer=None) -> Checkpoint:
    """Reload a saved checkpoint with ``from_pretrained`` (tokenizer first, then the model).

    Introduced in notebook 04_full_parameter_training. The model is returned in eval mode.
    When the directory has a record, its files are checked against it first. Any failure
    raises :class:`CheckpointError` naming the directory and the problem (the library's
    error stays chained as its cause). ``tokenizer``, when given, is used instead of loading
    the directory's own (:func:`load_or_train` passes the first checkpoint's to the second when
    :func:`same_tokenizer_files` says they are the same: loading one takes seconds).
    """
    directory = Path(directory)
    result = {}
    if (directory / RECORD_FILE).is_file():
        problem = checkpoint_problem(directory)
        if problem is not None:
            raise CheckpointError(directory, problem)
        result = read_record(directory).get("result") or {}
    try:
        tokenizer = load_tokenizer(directory) if tokenizer is None else tokenizer
        with _no_progress_bars():
            model = load_model(directory, tokenizer)
    except Exception as exc:
        raise CheckpointError(directory, f"cannot be loaded ({_explain(directory, exc)})") from exc
    model.eval()
    return Checkpoint(model=model, tokenizer=tokenizer, path=directory, epoch_losses=result.get("epoch_losses"),
                      steps=result.get("steps"), seconds=result.get("seconds"))


def _explain(directory: Path, error: Exception) -> str:
    """The library error behind a failed load, in one line: ``SafetensorError: ...``, or the
    problem a :class:`ModelSettingError` names (without repeating the directory)."""
    if isinstance(error, ModelSettingError) and error.__cause__ is None:
        return str(error).removeprefix(f"{describe_source(directory)}: ")
    if isinstance(error, ModelSettingError):
        error = error.__cause__
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def load_or_train(
    root: str | os.PathLike | None = None, records=None, seed: int = 0, retrain: bool = True, model_name=_FROM_SETTING,
    tokenizer=None,
) -> tuple[dict[str, Checkpoint], str]:
    """Both checkpoints from ``root``, trained and saved first when they cannot be used.

    Introduced in notebook 05_inference. Returns ``(checkpoints, how)`` where ``how`` is
    ``"loaded"`` or ``"trained"``. A checkpoint is loaded only when it is intact and was
    trained on the run asked for now: the model named by ``model_setting()``, its
    :func:`recipe`, ``seed``, ``records`` (default: :func:`helpers.data.load_records`), the
    collators' default options, and this machine's device type and training precision
    (:func:`training_environment`: a checkpoint trained on a GPU in bf16 is retrained on a CPU).
    Otherwise one printed line says why, and :func:`train_both` trains both again (the run
    notebook 04_full_parameter_training makes); with ``retrain=False`` a
    :class:`CheckpointError` is raised instead.

    ``model_name`` overrides ``model_setting()``: notebooks 06 and 07 pass ``None``, the tiny
    model, whatever ``$PVS_MODEL`` says. ``root`` defaults to :data:`DEFAULT_OUTPUTS`, or to its
    ``tiny`` subdirectory when ``model_name`` is the tiny model while ``$PVS_MODEL`` names
    another one, so that the two never overwrite each other's checkpoints (any other
    ``model_name`` needs an explicit ``root``). ``tokenizer``, one the caller already has, is
    used for every checkpoint that holds the same tokenizer files (:func:`saves_as`) instead of
    loading the directory's.
    """
    from .data import load_records

    records = load_records() if records is None else records
    if model_name is _FROM_SETTING:
        model_name = model_setting()
    if root is None and model_name == model_setting():
        root = DEFAULT_OUTPUTS
    elif root is None and model_name is None:
        root = DEFAULT_OUTPUTS / "tiny"
    elif root is None:
        raise ValueError(f"load_or_train: model_name {model_name!r} is not what {MODEL_ENV_VAR} names; pass a root for its checkpoints")
    config = recipe(model_name)
    environment = training_environment(config)
    dirs = checkpoint_dirs(root)
    problems = {}
    for objective, directory in dirs.items():
        problem = checkpoint_problem(
            directory, training_record(objective, model_name, config, records, seed, environment=environment))
        if problem is not None:
            problems[directory] = problem
    if not problems:
        try:
            return _load_all(dirs, tokenizer), "loaded"
        except CheckpointError as exc:
            problems[exc.directory] = exc.problem
    reasons = "; ".join(f"{shown(d)}: {p}" for d, p in problems.items())
    if not retrain:
        directory, problem = next(iter(problems.items()))
        raise CheckpointError(directory, problem)
    if len(problems) == len(dirs) and all(p.startswith("does not exist") for p in problems.values()):
        print(f"no checkpoints in {shown(root)} yet: training them")
    else:
        print(f"training the checkpoints again: {reasons}")
    tokenizer = load_tokenizer(model_name)
    results = train_both(tokenizer, records, config, model_name=model_name, seed=seed)
    for objective, result in results.items():
        save_checkpoint(result.model, tokenizer, dirs[objective])
    return _load_all(dirs, tokenizer), "trained"


def _load_all(dirs: dict[str, Path], tokenizer=None) -> dict[str, Checkpoint]:
    """Load every checkpoint of ``dirs``, loading a tokenizer only once when their files are the
    same, and not at all when ``tokenizer`` saves as the checkpoint's files."""
    loaded: dict[str, Checkpoint] = {}
    for objective, directory in dirs.items():
        shared = next((c.tokenizer for c in loaded.values() if same_tokenizer_files(c.path, directory)), None)
        if shared is None and tokenizer is not None and saves_as(tokenizer, directory):
            shared = tokenizer
        loaded[objective] = load_checkpoint(directory, tokenizer=shared)
    return loaded
