"""bamkd: BAM! Born-Again Multi-Task Networks for BERT-like encoders.

Single-task teachers are distilled into one multi-task student whose targets move from the
teachers' outputs to the gold labels over training (teacher annealing), as in Clark et al., 2019.

``bamkd.load(path)`` (or ``bamkd.Predictor.from_pretrained(path)``) gives a predictor for a
trained run; ``with bamkd.setup(cfg) as ctx: bamkd.fit(ctx, max_steps=..., callbacks=...)``
trains one from code (bamkd.train, bamkd.callbacks). All import torch and transformers only when
first used, so ``import bamkd`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bamkd.outputs.predict import Predictor
    from bamkd.train import fit, setup

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "fit", "load", "setup"]


def load(path: str | Path, **kwargs: Any) -> Predictor:
    """A `Predictor` for a run folder, a model folder or an exported ``multitask/`` folder.

    Keyword arguments go to `Predictor.from_pretrained` (device, batch_size, max_length).
    """
    from bamkd.outputs.predict import Predictor

    return Predictor.from_pretrained(path, **kwargs)


def __getattr__(name: str) -> Any:
    # PEP 562: `from bamkd import Predictor` imports the inference module on first use only.
    if name == "Predictor":
        from bamkd.outputs.predict import Predictor

        return Predictor
    if name in ("fit", "setup"):
        import bamkd.train

        return getattr(bamkd.train, name)
    raise AttributeError(f"module 'bamkd' has no attribute {name!r}")
