"""powerpool: keep a server pool just warm enough."""

__version__ = "0.1.0"
