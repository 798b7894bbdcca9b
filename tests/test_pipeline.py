"""MarblePipeline on the tiny trained run: reproducibility, guidance, previews, progress, request validation."""

import pytest
import torch

from marble.errors import MarbleError
from marble.pipeline import GenerationRequest, MarblePipeline


@pytest.fixture(scope="module")
def pipeline(tiny_run) -> MarblePipeline:
    return MarblePipeline.load(tiny_run)


def request(**changes) -> GenerationRequest:
    settings = dict(prompt="red circle", steps=5, guidance=3.0, sampler="dpm++", seed=7, num_images=2)
    settings.update(changes)
    return GenerationRequest(**settings)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    return (a.int() - b.int()).abs().max().item()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "euler-a", "dpm++"])
def test_same_seed_gives_identical_pixels(pipeline, sampler):
    first = pipeline.generate(request(sampler=sampler)).images
    second = pipeline.generate(request(sampler=sampler)).images
    assert first.shape == (2, 3, 16, 16) and first.dtype == torch.uint8
    assert torch.equal(first, second)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "euler-a", "dpm++"])
def test_another_seed_gives_other_images(pipeline, sampler):
    first = pipeline.generate(request(sampler=sampler, seed=7)).images
    other = pipeline.generate(request(sampler=sampler, seed=8)).images
    assert not torch.equal(first, other)


def test_images_of_one_request_differ_from_each_other(pipeline):
    images = pipeline.generate(request(num_images=3)).images
    assert images.shape == (3, 3, 16, 16)
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[1], images[2])


def test_result_carries_the_request_and_time(pipeline):
    asked = request(num_images=1)
    result = pipeline.generate(asked)
    assert result.request == asked
    assert result.seconds > 0


def test_guidance_at_most_one_skips_guidance(pipeline):
    unguided = pipeline.generate(request(guidance=1.0)).images
    # diffusers guides only when the scale exceeds 1: every scale up to 1 is the plain conditional model.
    assert torch.equal(unguided, pipeline.generate(request(guidance=0.5)).images)
    assert torch.equal(unguided, pipeline.generate(request(guidance=0.0)).images)
    assert not torch.equal(unguided, pipeline.generate(request(guidance=3.0)).images)


def test_guidance_towards_the_negative_prompt_itself_is_the_conditional_model(pipeline):
    # ε(∅) + s·(ε(c) − ε(∅)) = ε(c) when the negative prompt is the prompt (Ho & Salimans 2022, eq. 6).
    unguided = pipeline.generate(request(guidance=1.0)).images
    self_guided = pipeline.generate(request(guidance=3.0, negative_prompt="red circle")).images
    assert max_difference(unguided, self_guided) <= 1


def test_negative_prompt_changes_guided_images(pipeline):
    plain = pipeline.generate(request(guidance=3.0)).images
    steered = pipeline.generate(request(guidance=3.0, negative_prompt="blue square")).images
    assert not torch.equal(plain, steered)


def test_previews_come_every_k_steps_and_at_the_end(pipeline):
    previews = []
    final = pipeline.generate(request(sampler="ddim", preview_every=2), on_preview=previews.append).images
    assert [p.step for p in previews] == [2, 4, 5]
    assert all(p.total == 5 for p in previews)
    for preview in previews:
        assert preview.images.shape == (2, 3, 16, 16) and preview.images.dtype == torch.uint8
    noise = torch.randn((2, 2, 8, 8), generator=torch.Generator().manual_seed(7))
    assert (pipeline.unet.config.in_channels, pipeline.unet.config.sample_size) == (2, 8)
    assert max_difference(previews[-1].images, pipeline.decode(noise)) > 10
    # DDIM's last step lands (almost) on its own x0 estimate: the last preview is the final image.
    assert max_difference(previews[-1].images, final) <= 3


def test_no_previews_unless_asked(pipeline):
    previews = []
    pipeline.generate(request(preview_every=0), on_preview=previews.append)
    assert previews == []


def test_previews_do_not_change_the_images(pipeline):
    plain = pipeline.generate(request(sampler="euler-a")).images
    with_previews = pipeline.generate(request(sampler="euler-a", preview_every=1), on_preview=lambda p: None).images
    assert torch.equal(plain, with_previews)


def test_progress_counts_every_model_call(pipeline):
    calls = []
    pipeline.generate(request(steps=5), on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 5) for k in range(1, 6)]
    heun_calls = []
    pipeline.generate(request(steps=3, sampler="heun"), on_progress=lambda done, total: heun_calls.append((done, total)))
    assert heun_calls == [(k, 5) for k in range(1, 6)]  # Heun: 2·steps − 1 model calls


def test_chinese_prompt_works(pipeline):
    images = pipeline.generate(request(prompt="红色circle")).images
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert not torch.equal(images, pipeline.generate(request(prompt="blue square")).images)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", ""),
        ("prompt", "   \n"),
        ("prompt", None),
        ("negative_prompt", None),
        ("steps", 0),
        ("steps", -1),
        ("steps", 1001),
        ("steps", 2.5),
        ("steps", True),
        ("steps", "5"),
        ("guidance", float("nan")),
        ("guidance", float("inf")),
        ("guidance", -1.0),
        ("guidance", 51.0),
        ("guidance", "3"),
        ("guidance", True),
        ("num_images", 0),
        ("num_images", 65),
        ("seed", -1),
        ("seed", 2**63),
        ("sampler", "nope"),
        ("preview_every", -1),
    ],
)
def test_bad_requests_name_the_field(field, value):
    with pytest.raises(MarbleError, match=f"^{field}:"):
        request(**{field: value}).validate()


def test_limits_themselves_are_accepted():
    for good in (request(steps=1), request(steps=1000), request(num_images=64), request(seed=2**63 - 1),
                 request(guidance=0), request(guidance=50)):
        good.validate()


def test_generate_validates_before_sampling(pipeline):
    with pytest.raises(MarbleError, match="^steps:"):
        pipeline.generate(request(steps=0))


def test_loading_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(MarbleError, match="no trained model"):
        MarblePipeline.load(tmp_path / "nowhere")


def test_loading_a_half_trained_run_names_what_is_missing(tmp_path):
    (tmp_path / "text" / "encoder").mkdir(parents=True)
    with pytest.raises(MarbleError, match="no trained model") as error:
        MarblePipeline.load(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "unet" / "model") in message and str(tmp_path / "text" / "encoder") not in message
