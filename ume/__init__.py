"""ume: reasoning-driven universal multimodal embeddings (Embed-RL) as a reproducible pipeline."""

__version__ = "0.1.0"
