"""Policies and hardware profiles: load, validate and cross-check into the model."""

from powerpool.config.load import Loaded, PolicyBundle, discover, load_all

__all__ = ["Loaded", "PolicyBundle", "discover", "load_all"]
