"""helpers: the small package the "Pretraining vs SFT, hands-on" notebooks import.

One module per concept; each public function's docstring names the notebook that
introduces it. The names re-exported here are the public contract (see the README).
"""

from .collators import IGNORE_INDEX, PretrainCollator, RecordTooLongError, SFTCollator
from .data import DataError, load_records
from .generation import Generation, generate
from .model import TinyQwenConfig, load_model
from .settings import MODEL_ENV_VAR, PROJECT_ROOT, model_setting, outputs_dir, shown
from .tokenizer import load_tokenizer
from .training import TrainConfig, TrainResult, train
from .chat_templates import CHAT_FAMILIES, GEMMA, LLAMA3, QWEN25, QWEN_TRAINING_TEMPLATE, ChatFamily, record_to_messages
from .plotting import plot_label_grid
from .memory import (
    GB, SCHEMES, MeasuredMemory, MemoryEstimate, PeakMemoryEstimate, StateBytes, count_parameters,
    count_parameters_on_meta, count_training_state, estimate_peak_memory, estimate_training_memory,
    measure_training_memory, plot_estimate_vs_measured, qwen25_05b_config, saved_activation_bytes,
)
from .checkpoints import (
    PRETRAINED_LEARNING_RATE, PRETRAINED_RECIPE, RECORD_FILE, Checkpoint, CheckpointError, checkpoint_dirs,
    checkpoint_problem, has_checkpoint, load_checkpoint, load_or_train, read_record, recipe, records_sha256,
    save_checkpoint, train_both, training_environment, training_record,
)
from .data import check_record, find_control_token
from .settings import ModelSettingError
from .pitfalls import (
    VARIANTS, Measurement, Variant, VariantRun, add_pad_token, describe_run, ensure_embedding_rows, measure,
    next_token_probability, results_table, train_variant,
)

__all__ = [
    "DataError", "Generation", "IGNORE_INDEX", "MODEL_ENV_VAR", "PretrainCollator",
    "RecordTooLongError", "SFTCollator", "TinyQwenConfig", "TrainConfig", "TrainResult",
    "generate", "load_model", "load_records", "load_tokenizer", "model_setting", "train",
]
__all__ += [  # notebooks 01_chat_templates and 03_label_masking
    "CHAT_FAMILIES", "ChatFamily", "GEMMA", "LLAMA3", "QWEN25", "QWEN_TRAINING_TEMPLATE",
    "plot_label_grid", "record_to_messages",
]
__all__ += [  # notebooks 04_full_parameter_training and 05_inference
    "Checkpoint", "GB", "MeasuredMemory", "MemoryEstimate", "PRETRAINED_LEARNING_RATE", "PeakMemoryEstimate",
    "SCHEMES", "StateBytes", "checkpoint_dirs", "count_parameters", "count_parameters_on_meta",
    "count_training_state", "estimate_peak_memory", "estimate_training_memory",
    "has_checkpoint", "load_checkpoint", "load_or_train", "measure_training_memory",
    "plot_estimate_vs_measured", "qwen25_05b_config", "recipe", "save_checkpoint",
    "saved_activation_bytes", "train_both",
    "CheckpointError", "ModelSettingError", "PRETRAINED_RECIPE", "RECORD_FILE", "checkpoint_problem",
    "read_record", "records_sha256", "training_environment", "training_record", "check_record", "find_control_token",
]
__all__ += ["PROJECT_ROOT", "outputs_dir", "shown"]  # paths anchored to the project (notebook 04)
__all__ += [  # notebook 02_pad_eos_pitfalls
    "Measurement", "VARIANTS", "Variant", "VariantRun", "add_pad_token", "describe_run",
    "ensure_embedding_rows", "measure", "next_token_probability", "results_table", "train_variant",
]

from .packing import PackingCollator, pack_into_blocks

__all__ += [  # notebook 07_packing
    "PackingCollator", "pack_into_blocks",
]

from .collators import POST_RECORD, ChatSFTCollator, Fields

__all__ += [  # records of any shape, and the chat SFT collator of notebook 06_lora_vs_full (issue 23)
    "ChatSFTCollator", "Fields", "POST_RECORD",
]

from .lora import (  # notebook 06_lora_vs_full
    ATTENTION_PROJECTIONS, LORA_SCHEMES, QWEN2_PROJECTIONS, LoraMemoryEstimate, LoraSettings, MeasuredTrainingState,
    apply_lora, count_trainable_parameters, estimate_lora_training_memory, expected_lora_parameters,
    load_lora_adapter, lora_parameter_counts_on_meta, measure_training_state, targeted_linears,
)
__all__ += [  # notebook 06_lora_vs_full
    "ATTENTION_PROJECTIONS", "LORA_SCHEMES", "QWEN2_PROJECTIONS", "LoraMemoryEstimate", "LoraSettings",
    "MeasuredTrainingState", "apply_lora", "count_trainable_parameters", "estimate_lora_training_memory",
    "expected_lora_parameters", "load_lora_adapter", "lora_parameter_counts_on_meta", "measure_training_state",
    "targeted_linears",
]
