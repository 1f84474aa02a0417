"""access-gateway: edge access control for residential compound gates."""

__version__ = "0.1.0"
