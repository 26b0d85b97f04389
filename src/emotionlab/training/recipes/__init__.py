"""Recipes turn a run config and a dataset into what Lightning trains and what gets exported.

A recipe returns a ``Prepared``: the network to optimise, the train/validation datasets, the learning-rate
layout, and ``export`` (trained network -> the complete model saved to the model file). One file per recipe,
each registering itself with ``@register_recipe``:

- ``scratch``: every weight trained on images;
- ``transfer``: a frozen backbone whose features are computed once and cached, only a new head trained;
- ``finetune``: every weight of a complete model file, the backbone at a lower learning rate;
- ``pretrain``: a backbone trained on FER+ faces held in memory.
"""

from emotionlab.training.recipes import finetune, pretrain, scratch, transfer  # noqa: F401  (they register themselves)
from emotionlab.training.recipes.registry import (
    Prepared,
    RecipeFn,
    create_recipe,
    list_recipes,
    register_recipe,
)

__all__ = ["Prepared", "RecipeFn", "create_recipe", "list_recipes", "register_recipe"]
