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

__all__ = [
    "DataError", "Generation", "IGNORE_INDEX", "MODEL_ENV_VAR", "PretrainCollator",
    "RecordTooLongError", "SFTCollator", "TinyQwenConfig", "TrainConfig", "TrainResult",
    "generate", "load_model", "load_records", "load_tokenizer", "model_setting", "train",
]
