import pytest
import torch
from safetensors.torch import save_file

from marble.errors import MarbleError
from marble.evaluation.extractors import InceptionV3Extractor, make_extractor, resize_for
from marble.evaluation.inception import FIDInceptionV3, load_fid_inception

# torchvision documents inception_v3 with 27,161,264 parameters (aux classifier, 1000 classes).
# pytorch-fid's fid_inception_v3() drops AuxLogits (3,326,696: conv0 98,304 + bn 256, conv1 2,457,600
# + bn 1,536, fc 769,000) and widens fc to 1008 classes (+8 x 2049 = 16,392).
FID_INCEPTION_PARAMETERS = 27_161_264 - 3_326_696 + 16_392  # 23,850,960
# 94 BasicConv2d blocks (conv weight + 5 batch-norm entries each) and fc weight + bias.
FID_INCEPTION_STATE_KEYS = 94 * 6 + 2


def scrambled_inception(seed: int = 0) -> FIDInceptionV3:
    """Random weights *and* batch-norm statistics, scaled so activations stay O(1) through 90 layers."""
    torch.manual_seed(seed)
    model = FIDInceptionV3()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.8, 1.2)
            module.bias.data.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def saved_inception(tmp_path_factory):
    model = scrambled_inception()
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-test.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=generator)


def test_structure_matches_pytorch_fid():
    model = FIDInceptionV3()
    assert sum(p.numel() for p in model.parameters()) == FID_INCEPTION_PARAMETERS == 23_850_960
    keys = model.state_dict().keys()
    assert len(keys) == FID_INCEPTION_STATE_KEYS
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var", "Mixed_5b.branch5x5_2.conv.weight",
                "Mixed_6a.branch3x3dbl_3.bn.bias", "Mixed_6e.branch7x7dbl_5.conv.weight",
                "Mixed_7a.branch7x7x3_4.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.num_batches_tracked", "fc.bias"):
        assert key in keys
    assert model.fc.weight.shape == (1008, 2048)
    assert model.Mixed_6b.branch7x7_1.conv.out_channels == 128 and model.Mixed_6e.branch7x7_1.conv.out_channels == 192


def test_pool3_shapes_on_a_299_image():
    with torch.no_grad():
        features = scrambled_inception()(torch.zeros(1, 3, 299, 299))
    assert features.shape == (1, 2048)
    assert torch.isfinite(features).all() and features.abs().sum() > 0


def test_extractor_loads_the_saved_file_and_matches_the_module(saved_inception, images):
    model, path = saved_inception
    extractor = make_extractor("inception", weights_path=path)
    assert (extractor.name, extractor.dim, extractor.input_size) == ("inception", 2048, 299)
    features = extractor.features(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float64
    with torch.no_grad():
        direct = model(resize_for(images, 299).float() / 127.5 - 1.0).double()
    torch.testing.assert_close(features, direct, rtol=1e-5, atol=1e-6)
    assert torch.equal(extractor.features(images), features)  # deterministic: eval mode, no dropout
    assert not torch.allclose(features[0], features[1])


def test_safetensors_file_with_the_same_keys_loads(saved_inception, tmp_path):
    model, _ = saved_inception
    path = tmp_path / "inception.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path)
    loaded = load_fid_inception(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_file_without_batch_norm_counters_still_loads(saved_inception, tmp_path):
    model, _ = saved_inception
    state = {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    loaded = load_fid_inception(tmp_path / "old.pth")
    assert torch.equal(loaded.Mixed_7c.branch_pool.bn.running_var, model.Mixed_7c.branch_pool.bn.running_var)


def test_wrong_keys_name_the_missing_ones(saved_inception, tmp_path):
    model, _ = saved_inception
    state = dict(model.state_dict())
    del state["fc.weight"]
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(MarbleError, match=r"1 missing keys \[fc.weight\].*1 unexpected keys \[AuxLogits.fc.weight\]"):
        InceptionV3Extractor(tmp_path / "wrong.pth")


def test_wrong_shapes_missing_files_and_pickles_are_marble_errors(saved_inception, tmp_path):
    model, _ = saved_inception
    state = dict(model.state_dict())
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "shapes.pth")
    with pytest.raises(MarbleError, match="shapes"):
        load_fid_inception(tmp_path / "shapes.pth")
    with pytest.raises(MarbleError, match="not found"):
        load_fid_inception(tmp_path / "absent.pth")
    torch.save({"fc": torch.nn.Linear(2, 2)}, tmp_path / "pickled_module.pth")  # needs full unpickling
    with pytest.raises(MarbleError, match="cannot read"):
        load_fid_inception(tmp_path / "pickled_module.pth")
    with pytest.raises(MarbleError, match="weights_path"):
        make_extractor("inception")
