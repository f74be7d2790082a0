"""Training: settings (:mod:`.config`), the batches of a run (:mod:`.batches`), the trainer
loop (:mod:`.trainer`), checkpoints (:mod:`.checkpoint`), one call from data to a model
(:mod:`.fit`), semi-supervised fitting, transfer and interruption by signals."""

from flowaug.training.batches import prepare_batch
from flowaug.training.checkpoint import History, latest_checkpoint
from flowaug.training.config import TrainConfig, default_config
from flowaug.training.fit import build_model, fit, split_index, train_val_split
from flowaug.training.interrupts import TrainingInterrupted
from flowaug.training.trainer import FlowTrainer, NonFiniteLossError
from flowaug.training.transfer import transfer_model

__all__ = [
    "TrainConfig",
    "FlowTrainer",
    "History",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "fit",
    "build_model",
    "default_config",
    "prepare_batch",
    "split_index",
    "train_val_split",
    "latest_checkpoint",
    "transfer_model",
]
