"""Fine-tuning the end-to-end model for speech translation (``streamst train``).

* :mod:`~streamst.training.config`: the options (one frozen dataclass);
* :mod:`~streamst.training.data`: manifest validation, examples and prefix pairs, batches;
* :mod:`~streamst.training.trainer`: trainable parts (LoRA via peft), loss, loop, checkpoints;
* :mod:`~streamst.training.artifacts`: merged model dir, profile, loss plot, evaluation;
* :mod:`~streamst.training.recipe`: one run, validated first, published atomically;
* :mod:`~streamst.training.distributed`: data-parallel runs under ``torchrun``;
* :mod:`~streamst.training.manifests`: manifests from public corpus layouts (``streamst manifest``).
"""

from streamst.training.config import PARTS, TrainConfig, parse_parts

__all__ = ["PARTS", "TrainConfig", "parse_parts"]
