"""ControlNet (Zhang et al. 2023): spatial conditions computed from images, the model, and its use in sampling."""
