"""Training of the Imitator prior (``python -m core train``).

    loop.py          the epoch loop: data order, validation, checkpoints, resume, early stopping
    batches.py       the training data in memory: 16-bit audio, compact targets, batches with masks
    reduced_loss.py  the vertex-space losses as exact quadratic forms in small Gram matrices
    augment.py       audio augmentation (channel, noise, room, speaker) on the batch, in the trainer
"""

from .loop import (TrainConfig, add_commands, load_checkpoint_state, pick_device, read_config_file, train,
                   warm_start)

__all__ = ["TrainConfig", "train", "pick_device", "read_config_file", "load_checkpoint_state", "add_commands",
           "warm_start"]
