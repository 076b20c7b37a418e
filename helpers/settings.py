"""The one setting that switches the series from the offline default to a real model.

Introduced in notebook 01_chat_templates. Unset (the default): the exact Qwen2.5 tokenizer
rebuilt offline plus a tiny random-init Qwen2 model that trains on a laptop CPU in seconds.
Set ``PVS_MODEL`` to a hub id (``Qwen/Qwen2.5-0.5B``, where a hub is reachable) or to a local
model directory, and every notebook loads that tokenizer and model with ``from_pretrained``.

A value that cannot work fails early with one :class:`ModelSettingError` that names
``PVS_MODEL``, its value and what is missing or unreachable, instead of the misleading errors
``from_pretrained`` gives for a bad path (``Repo id must be in the form 'repo_name'...`` for a
directory that does not exist, ``You need to have sentencepiece or tiktoken installed`` for an
empty one).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

MODEL_ENV_VAR = "PVS_MODEL"
#: Where checkpoints go instead of ``outputs/`` (``make test`` points it at a fresh folder).
OUTPUTS_ENV_VAR = "PVS_OUTPUTS"

#: The project's root (the folder holding ``helpers/``, ``data/`` and ``notebooks/``): every
#: default path is anchored here, so a notebook run from any folder reads and writes the same files.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Files that make a directory a model ``load_model`` can read: the config, and the weights
#: as one safetensors file or as shards listed in an index (the series loads safetensors only).
MODEL_CONFIG_FILE = "config.json"
MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
#: Any of these makes a directory hold a tokenizer ``AutoTokenizer`` can read.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
#: A model hub id: ``name`` or ``namespace/name`` (what ``huggingface_hub`` accepts).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?$")


class ModelSettingError(ValueError):
    """A model setting (``PVS_MODEL``) or model directory that cannot be loaded: the message
    names the setting, its value and what is missing or unreachable.

    >>> try:
    ...     check_model_source(PROJECT_ROOT / "data" / "poems.json", "model")
    ... except ModelSettingError as error:
    ...     print(str(error).replace(str(PROJECT_ROOT), "<project>"))
    '<project>/data/poems.json': is a file, not a model directory
    """


def model_setting() -> str | None:
    """The hub id or local directory named by ``$PVS_MODEL``, or None for the offline default.

    Introduced in notebook 01_chat_templates.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"PVS_MODEL": " Qwen/Qwen2.5-0.5B "}):
    ...     print(model_setting())
    Qwen/Qwen2.5-0.5B
    >>> with mock.patch.dict(os.environ, {"PVS_MODEL": ""}):
    ...     print(model_setting())
    None
    """
    value = os.environ.get(MODEL_ENV_VAR, "").strip()
    return value or None


def outputs_dir() -> Path:
    """Where checkpoints are saved: ``$PVS_OUTPUTS`` when set, else ``outputs/`` in the project.

    Introduced in notebook 04_full_parameter_training.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"PVS_OUTPUTS": ""}):
    ...     print(outputs_dir() == PROJECT_ROOT / "outputs")
    True
    """
    value = os.environ.get(OUTPUTS_ENV_VAR, "").strip()
    return Path(value).expanduser().resolve() if value else PROJECT_ROOT / "outputs"


def shown(path: str | os.PathLike) -> str:
    """``path`` as a notebook prints it: ``outputs/...`` for a checkpoint, relative to the project
    for its other files, and unchanged elsewhere, so that no machine-local folder shows.

    Introduced in notebook 04_full_parameter_training.

    >>> shown(outputs_dir() / "sft")
    'outputs/sft'
    >>> shown(PROJECT_ROOT / "data" / "poems.json")
    'data/poems.json'
    """
    path = Path(path)
    for base, prefix in ((outputs_dir(), "outputs"), (PROJECT_ROOT, "")):
        try:
            relative = path.resolve().relative_to(base)
        except ValueError:
            continue
        return (Path(prefix) / relative).as_posix() if prefix else relative.as_posix()
    return path.as_posix()


def describe_source(name_or_path: str | os.PathLike) -> str:
    """``PVS_MODEL='...'`` when ``name_or_path`` is the current setting, else the quoted value:
    the subject of every error about where a model comes from.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"PVS_MODEL": "my-model"}):
    ...     print(describe_source("my-model"), describe_source("other"))
    PVS_MODEL='my-model' 'other'
    """
    value = os.fspath(name_or_path)
    return f"{MODEL_ENV_VAR}={value!r}" if value == model_setting() else repr(value)


def check_model_source(name_or_path: str | os.PathLike, need: Literal["model", "tokenizer"]) -> Path | None:
    """Check that ``name_or_path`` can give a ``need`` before ``from_pretrained`` is called.

    Introduced in notebook 01_chat_templates, behind ``load_tokenizer(model_setting())``
    (``load_tokenizer`` and ``load_model`` call it for every non-default source). Returns the local directory, or None when
    ``name_or_path`` is to be read from a model hub (see :func:`hub_error`). Raises
    :class:`ModelSettingError` for a path that does not exist or is not a directory, an empty
    directory, and a directory without the files of a ``need`` (the model's config and
    safetensors weights, or a tokenizer).

    >>> check_model_source("Qwen/Qwen2.5-0.5B", "model") is None  # a hub id: from_pretrained fetches it
    True
    >>> try:
    ...     check_model_source(PROJECT_ROOT / "data", "tokenizer")
    ... except ModelSettingError as error:
    ...     print(str(error).replace(str(PROJECT_ROOT), "<project>").split(" (none of")[0])
    '<project>/data': the directory <project>/data holds no tokenizer
    """
    subject = describe_source(name_or_path)
    value = os.fspath(name_or_path)
    path = Path(value).expanduser()
    if not path.exists():
        if _HUB_ID.match(value) and "--" not in value and ".." not in value:
            return None  # a hub id (or a missing relative directory: hub_error says both)
        raise ModelSettingError(
            f"{subject}: no such directory (looked in {Path.cwd()}), and not a model hub id either. "
            f"Set {MODEL_ENV_VAR} to a local model directory, to a hub id such as Qwen/Qwen2.5-0.5B, "
            "or unset it for the offline default."
        )
    if not path.is_dir():
        raise ModelSettingError(f"{subject}: is a file, not a model directory")
    path = path.resolve()
    present = {p.name for p in path.iterdir()}
    wanted = (f"a model ({MODEL_CONFIG_FILE} and {MODEL_WEIGHT_FILES[0]}) "
              f"and its tokenizer ({TOKENIZER_FILES[0]}, {TOKENIZER_FILES[1]})")
    if not present:
        raise ModelSettingError(f"{subject}: the directory {path} is empty; it needs {wanted}")
    if need == "tokenizer" and not present.intersection(TOKENIZER_FILES):
        holds = "a model but " if MODEL_CONFIG_FILE in present else ""
        raise ModelSettingError(
            f"{subject}: the directory {path} holds {holds}no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            f"it needs {wanted}. Save the tokenizer there with tokenizer.save_pretrained."
        )
    if need == "model":
        missing = [] if MODEL_CONFIG_FILE in present else [MODEL_CONFIG_FILE]
        if not present.intersection(MODEL_WEIGHT_FILES):
            missing.append(f"{MODEL_WEIGHT_FILES[0]} (this series loads safetensors weights only)")
        if missing:
            holds = "a tokenizer but " if present.intersection(TOKENIZER_FILES) else ""
            raise ModelSettingError(
                f"{subject}: the directory {path} holds {holds}no model: missing {' and '.join(missing)}; "
                f"it needs {wanted}. Save the model there with model.save_pretrained."
            )
    return path


def hub_error(name_or_path: str | os.PathLike, need: str, error: BaseException) -> ModelSettingError:
    """The :class:`ModelSettingError` for a hub id whose ``from_pretrained`` raised ``error``.

    Introduced in notebook 01_chat_templates, behind ``load_tokenizer(model_setting())``. It says whether no hub could be
    reached (offline mode, or no connection, and nothing in the local hub cache), or the hub
    has no such model, and that a local directory works without a hub.

    >>> print(hub_error("Qwen/Qwen2.5-0.5B", "model", ValueError("bad config")))
    'Qwen/Qwen2.5-0.5B': from_pretrained could not load the model: bad config
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    subject = describe_source(name_or_path)
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    unreachable = isinstance(chain[0], OSError) and "couldn't connect" in str(chain[0])
    if any(isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)) for e in chain) or unreachable:
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
               else "the connection failed; HF_HUB_OFFLINE=1 skips the attempts")
        return ModelSettingError(
            f"{subject}: not a local directory (looked in {Path.cwd()}), and no model hub could be reached "
            f"to fetch the {need} as a hub id ({why}; nor is it in the local hub cache). Set "
            f"{MODEL_ENV_VAR} to a local directory that holds the model and its tokenizer "
            "(save_pretrained writes one), or download it where a hub is reachable."
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return ModelSettingError(f"{subject}: the model hub has no such model (or it is private or gated)")
    first_line = str(chain[0]).strip().splitlines()[0] if str(chain[0]).strip() else type(chain[0]).__name__
    return ModelSettingError(f"{subject}: from_pretrained could not load the {need}: {first_line}")


def load_or_explain(name_or_path, local: Path | None, need: str, from_pretrained, **kwargs):
    """``from_pretrained(name_or_path, **kwargs)``, with its failure turned into one
    :class:`ModelSettingError` (the original error stays chained as its cause).

    Introduced in notebook 01_chat_templates, behind ``load_tokenizer(model_setting())``. ``local`` is what
    :func:`check_model_source` returned: None for a hub id, whose failure
    :func:`hub_error` explains.

    >>> def broken(path, **kwargs):
    ...     raise OSError("config.json is not valid JSON")
    >>> try:
    ...     load_or_explain(PROJECT_ROOT / "data", PROJECT_ROOT / "data", "model", broken)
    ... except ModelSettingError as error:
    ...     print(str(error).replace(str(PROJECT_ROOT), "<project>"))
    '<project>/data': from_pretrained could not load the model from <project>/data: config.json is not valid JSON
    """
    try:  # the checked local path: from_pretrained itself would not expand a leading ~
        return from_pretrained(name_or_path if local is None else local, **kwargs)
    except Exception as exc:
        if local is None:
            raise hub_error(name_or_path, need, exc) from exc
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSettingError(
            f"{describe_source(name_or_path)}: from_pretrained could not load the {need} from {local}: {detail}"
        ) from exc
