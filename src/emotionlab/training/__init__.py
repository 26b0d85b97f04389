"""Training: the LightningModule, data module, callbacks and the recipes built on them."""
