"""Training: the LightningModule, data module, callbacks and the recipes built on them; ``preview`` draws views of
the training augmentation (``emotionlab augment-preview``)."""
