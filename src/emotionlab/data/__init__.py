"""Data: safe image reading, datasets, manifests, audit, splits and face crops."""
