"""Fine-tuning: train on each task in turn with no protection (the lower bound)."""

from anpyc.methods.base import Method
from anpyc.methods.registry import register


@register
class Finetune(Method):
    """Plain sequential training; every hook is the base no-op."""

    name = "finetune"
    tags = frozenset({"lower-bound"})
