"""helpers: the small package the "Pretraining vs SFT, hands-on" notebooks import.

One module per concept; each public function's docstring names the notebook that
introduces it. The names re-exported here are the public contract (see the README).
"""

from .collators import IGNORE_INDEX, PretrainCollator, RecordTooLongError, SFTCollator
from .data import DataError, load_records
from .generation import Generation, generate
from .model import TinyQwenConfig, load_model
from .settings import MODEL_ENV_VAR, model_setting
from .tokenizer import load_tokenizer
from .training import TrainConfig, TrainResult, train
from .chat_templates import CHAT_FAMILIES, GEMMA, LLAMA3, QWEN25, QWEN_TRAINING_TEMPLATE, ChatFamily, record_to_messages
from .plotting import plot_label_grid


__all__ = [
    "DataError", "Generation", "IGNORE_INDEX", "MODEL_ENV_VAR", "PretrainCollator",
    "RecordTooLongError", "SFTCollator", "TinyQwenConfig", "TrainConfig", "TrainResult",
    "generate", "load_model", "load_records", "load_tokenizer", "model_setting", "train",
]
__all__ += [  # notebooks 01_chat_templates and 03_label_masking
    "CHAT_FAMILIES", "ChatFamily", "GEMMA", "LLAMA3", "QWEN25", "QWEN_TRAINING_TEMPLATE",
    "plot_label_grid", "record_to_messages",
]
