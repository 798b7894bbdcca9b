"""Marble: text-to-image latent diffusion trained from scratch on your captioned images."""

__version__ = "0.1.0"
