"""What a model declares about its configuration, readable without importing torch.

A :class:`ModelSpec` subclass (one per model, in ``mmtrain/models/specs/<name>.py``) holds everything config
resolution and ``mmtrain models`` need: the name, a one-line summary, the hyperparameters with their defaults
(and so their types), the allowed choices and ranges, the renamed keys and the cross-key checks. The model
class in ``mmtrain/models/<name>.py`` subclasses its spec, so ``LightGCN.defaults`` is the spec's, and the
registry checks that it does (``mmtrain.models.registry``). Keeping the spec torch-free lets ``mmtrain models``,
``--help`` and every config error answer in well under a second; torch is imported only to train or evaluate.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmtrain.config import Range

REG_STYLES: tuple[str, ...] = ("emb", "l2")
"""``reg_style`` values (``mmtrain.models.losses.regularizer``)."""

UI_NORMS: tuple[str, ...] = ("sym", "sym_self", "rw_self", "mean")
"""U-I adjacency normalisations (``mmtrain.graph.adjacency.NORMS``)."""

FEATURE_NORMS: tuple[str, ...] = ("none", "l2", "zscore")
"""``feature_norm`` values: per-modality scaling of raw features (``mmtrain.models.vbpr.scale_features``)."""


class ModelSpec:
    """A model's configuration contract; subclass it in ``mmtrain/models/specs/<name>.py``.

    ``name``: the CLI name; ``summary``: one line for ``mmtrain models``; ``defaults``: the hyperparameters
    ``--set`` may change, with their types; ``choices``: allowed values of string hyperparameters; ``ranges``:
    allowed intervals of numeric ones (the shared vocabulary's, ``mmtrain.config.VOCABULARY_RANGES``, apply
    without being listed); ``renames``: old key -> new key (an old name is a one-line error naming the new one);
    :meth:`check_config`: cross-key checks. All are checked when the config is resolved, before data loads.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    ranges: ClassVar[dict[str, Range]] = {}
    renames: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """Cross-key checks of a resolved config (raise a one-line TrainError); none by default."""
