"""Request and response bodies of the HTTP API (strict types; ranges come from GenerationRequest)."""

from __future__ import annotations

import secrets
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from marble.diffusion.samplers import SAMPLERS
from marble.editing import ImageEdit, decode_base64, make_edit
from marble.pipeline import MAX_IMAGES, MAX_SEED, MAX_STEPS, GenerationRequest

MAX_PROMPT_CHARS = 500
RANDOM_SEED_LIMIT = 2**32  # random seeds stay exact in JavaScript numbers (< 2**53)
MAX_IMAGE_CHARS = 100_000  # base64 of a PNG: room for an incompressible 128 px RGBA image
MAX_EDIT_PIXELS = 1024 * 1024  # decoding cap before the exact-size check; a PNG header cannot make us decode more

SamplerName = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]


class JobSubmission(BaseModel):
    """A generation job; `seed` null draws a random seed (returned in the job status)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, examples=["a red apple"])
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    steps: int = Field(default=30, ge=1, le=MAX_STEPS)
    guidance: float = Field(default=5.0, ge=0, le=50)
    sampler: SamplerName = "dpm++"
    seed: Optional[int] = Field(default=None, ge=0, le=MAX_SEED)
    num_images: int = Field(default=1, ge=1, le=MAX_IMAGES)
    preview_every: int = Field(default=5, ge=0, le=MAX_STEPS, description="decode a preview every k steps; 0: none")
    model: Optional[str] = Field(default=None, max_length=200, description="a name from /api/models; default: the first")
    init_image: Optional[str] = Field(default=None, max_length=MAX_IMAGE_CHARS,
                                      description="img2img: base64 PNG (or data: URL) of the source, image_size square")
    strength: Optional[float] = Field(default=None, ge=0, le=1,
                                      description="with init_image: 0 keeps the source, 1 starts from pure noise; "
                                                  "default 0.8, or 1 with a mask")
    mask: Optional[str] = Field(default=None, max_length=MAX_IMAGE_CHARS,
                                description="inpainting: base64 PNG, white repaints, black or transparent keeps")
    paste_unmasked: bool = Field(default=False, description="copy the source's pixels outside the mask into the result")

    def generation_request(self) -> GenerationRequest:
        """The pipeline's request; its validate() is the one source of truth on ranges."""
        seed = secrets.randbelow(RANDOM_SEED_LIMIT) if self.seed is None else self.seed
        request = GenerationRequest(self.prompt, self.negative_prompt, self.steps, self.guidance, self.sampler,
                                    seed, self.num_images, self.preview_every, self.image_edit())
        request.validate()
        return request

    def image_edit(self) -> ImageEdit | None:
        """The img2img / inpainting part: PNG only, pixels capped; the exact size is checked against the model."""
        image = None if self.init_image is None else decode_base64(self.init_image, "init_image")
        mask = None if self.mask is None else decode_base64(self.mask, "mask")
        return make_edit(image, self.strength, mask, self.paste_unmasked, formats=("PNG",), max_pixels=MAX_EDIT_PIXELS)


class ImageInfo(BaseModel):
    id: str
    url: str
    index: int  # position in the batch: (seed, num_images, index) reproduces the image
    seed: int


class JobCreated(BaseModel):
    id: str
    token: str = Field(description="send as X-Job-Token to cancel this job; only its submitter has it")
    state: str
    seed: int
    status_url: str
    events_url: str
    cancel_url: str


class JobStatus(BaseModel):
    id: str
    model: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    position: Optional[int] = Field(description="jobs ahead in the queue while queued")
    step: int
    total: int
    request: dict
    images: list[ImageInfo]
    error: Optional[str]
    seconds: Optional[float]


class ModelInfo(BaseModel):
    name: str
    image_size: int
    samplers: list[str]
    queued: int


class Message(BaseModel):
    detail: str
