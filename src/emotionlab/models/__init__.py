"""Models: the study's CNN and every timm backbone, built by name; safe model files."""
