"""MultiBranchNet: shapes, fusion modes, modality dropout, input checks; pretrained weights."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor

from geomm.errors import GeommError, RecipeError
from geomm.model.branches import ResNetBranch
from geomm.model.network import LayerSpec, ModelConfig, ModelInputError, MultiBranchNet
from geomm.model.weights import (
    PretrainedWeightsWarning,
    WeightsError,
    WeightsUnavailableError,
    load_branch_weights,
)

P = 48  # base pixels: the 60 m layer is 8x8
S2_LAYERS = (
    LayerSpec("visible/10m", "visible", 3, 1),
    LayerSpec("infrared/10m", "infrared", 1, 1),
    LayerSpec("infrared/20m", "infrared", 2, 2),
    LayerSpec("multispectral/20m", "multispectral", 4, 2),
    LayerSpec("multispectral/60m", "multispectral", 2, 6),
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP stalls (100x here) when both cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_inputs(batch: int = 2, size: int = P, seed: int = 0) -> dict[str, Tensor]:
    """Seeded inputs, each layer at its native size (48, 24 or 8 px)."""
    gen = torch.Generator().manual_seed(seed)
    return {la.key: torch.randn(batch, la.channels, size // la.factor, size // la.factor,
                                generator=gen) for la in S2_LAYERS}


def make_net(**kwargs: object) -> MultiBranchNet:
    torch.manual_seed(0)
    return MultiBranchNet(ModelConfig(S2_LAYERS, num_classes=5, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("fusion", ["concat", "weighted", "attention", "early"])
def test_each_fusion_gives_base_grid_logits_and_trains_every_parameter(fusion: str) -> None:
    net = make_net(fusion=fusion).train()
    logits = net(make_inputs())
    assert logits.shape == (2, 5, P, P)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).mean().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []  # every branch and fusion weight is connected to the loss


@pytest.mark.parametrize("multilabel", [False, True])
def test_classification_head_gives_one_row_of_logits_per_patch(multilabel: bool) -> None:
    net = make_net(head="classification", multilabel=multilabel, fusion="weighted").eval()
    with torch.no_grad():
        logits = net(make_inputs(batch=3))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_branches_see_native_resolution_and_early_fusion_has_one_branch() -> None:
    late, early = make_net(), make_net(fusion="early")
    assert list(late.branches) == [la.key for la in S2_LAYERS]
    assert list(early.branches) == ["early"]
    assert early.branches["early"].stem[0][0].in_channels == 12  # all bands stacked
    seen: dict[str, tuple[int, ...]] = {}
    for key, branch in late.branches.items():
        branch.register_forward_hook(lambda m, a, out, key=key: seen.__setitem__(
            key, tuple(a[0].shape[-2:]) + tuple(out[0].shape[-2:])))
    late.eval()(make_inputs())
    # (input size, output size): every branch lands on the 24x24 fusion grid or is upsampled
    assert seen == {"visible/10m": (48, 48, 24, 24), "infrared/10m": (48, 48, 24, 24),
                    "infrared/20m": (24, 24, 24, 24), "multispectral/20m": (24, 24, 24, 24),
                    "multispectral/60m": (8, 8, 8, 8)}


def test_default_light_model_size_is_in_the_prototype_range() -> None:
    n = sum(p.numel() for p in make_net().parameters())
    assert 300_000 <= n <= 1_000_000


def test_modality_dropout_never_drops_every_modality_and_is_off_in_eval() -> None:
    net = make_net(modality_dropout=0.5).train()
    torch.manual_seed(1)
    mask = net.modality_mask(4000)
    assert mask.shape == (4000, 3)
    assert (mask.sum(dim=1) >= 1).all()
    assert (mask == 0).any()
    # each modality kept with p=0.5, plus the rescued all-dropped rows (1/8, shared by 3)
    assert mask.mean(dim=0).sub(0.5 + 0.125 / 3).abs().max() < 0.04
    with_missing = net.modality_mask(500, missing={"infrared"})
    assert (with_missing[:, 1] == 0).all() and (with_missing.sum(dim=1) >= 1).all()
    assert (net.eval().modality_mask(100) == 1).all()
    x = make_inputs()
    assert torch.equal(net(x), net(x))  # eval is deterministic: nothing dropped


def test_missing_modality_still_gives_a_map_without_its_inputs() -> None:
    net = make_net(fusion="attention").eval()
    full = make_inputs()
    without = {k: v for k, v in full.items() if not k.startswith("infrared")}
    with torch.no_grad():
        out = net(without, missing={"infrared"})
        ignored = net(full, missing={"infrared"})
        normal = net(full)
    assert out.shape == (2, 5, P, P) and torch.isfinite(out).all()
    assert torch.equal(out, ignored)  # infrared values are not used at all
    assert not torch.allclose(out, normal)


def test_absent_or_malformed_layer_is_refused_by_name() -> None:
    net = make_net().eval()
    x = make_inputs()
    del x["infrared/20m"]
    with pytest.raises(ModelInputError, match="'infrared/20m' is absent"):
        net(x)
    x = make_inputs()
    x["multispectral/60m"] = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"'multispectral/60m' has shape \(2, 3, 8, 8\)"):
        net(x)
    x = make_inputs()
    x["multispectral/60m"] = torch.randn(2, 2, 9, 9)  # 54 base px, the others say 48
    with pytest.raises(ValueError, match="'multispectral/60m' is 2x9x9 at factor 6"):
        net(x)
    with pytest.raises(GeommError, match="'sar'"):
        net(make_inputs(), missing={"sar"})
    with pytest.raises(ValueError, match="every modality"):
        net({}, missing={"visible", "infrared", "multispectral"})


def test_config_json_round_trip_rebuilds_the_same_model() -> None:
    cfg = ModelConfig(S2_LAYERS, 7, fusion="weighted", width=16, modality_dropout=0.2)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    a, b = MultiBranchNet(cfg).eval(), MultiBranchNet(again).eval()
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    x = make_inputs()
    assert torch.equal(a(x), b(x))


def test_config_errors_name_the_key() -> None:
    with pytest.raises(RecipeError, match="model.fusion: 'late' is not one of"):
        ModelConfig(S2_LAYERS, 3, fusion="late")  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match="unknown key"):
        ModelConfig.from_dict({**ModelConfig(S2_LAYERS, 3).to_dict(), "depth": 5})
    with pytest.raises(RecipeError, match="model.weights: 'sar'"):
        ModelConfig(S2_LAYERS, 3, backbone="resnet18", weights={"sar": "x.pth"})
    with pytest.raises(RecipeError, match="ResNet backbone"):
        ModelConfig(S2_LAYERS, 3, weights={"visible": "x.pth"})


# --- pretrained weights -------------------------------------------------------------------

def resnet_branch(in_chans: int, seed: int) -> ResNetBranch:
    torch.manual_seed(seed)
    return ResNetBranch("resnet18", in_chans, 8, 2)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_loads_every_tensor(tmp_path: Path, suffix: str) -> None:
    src, dst = resnet_branch(4, 0), resnet_branch(4, 1)
    state = {k: v.contiguous() for k, v in src.backbone.state_dict().items()}
    path = tmp_path / f"branch{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert not torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_branch_weights(dst.backbone, path, in_chans=4)
    assert sorted(loaded) == sorted(state)
    for key, value in dst.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_prefixed_checkpoint_keys_match_by_name(tmp_path: Path) -> None:
    src, dst = resnet_branch(3, 0), resnet_branch(3, 1)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"model." + k: v for k, v in src.state_dict().items()}}, path)
    loaded = load_branch_weights(dst.backbone, path, in_chans=3)
    assert "layer2.1.conv2.weight" in loaded
    assert torch.equal(dst.backbone.layer2[1].conv2.weight, src.backbone.layer2[1].conv2.weight)


def test_rgb_first_conv_is_adapted_and_multiband_mismatch_refused(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.safetensors"
    save_file(resnet_branch(3, 0).backbone.state_dict(), str(rgb))
    w3 = resnet_branch(3, 0).backbone.conv1.weight
    five = resnet_branch(5, 1)
    assert "conv1.weight" in load_branch_weights(five.backbone, rgb, in_chans=5)
    w5 = five.backbone.conv1.weight
    assert w5.shape == (64, 5, 7, 7)
    # repeated cyclically (R, G, B, R, G), scaled by 3/5 to keep about the same response
    assert torch.allclose(w5, torch.cat([w3, w3[:, :2]], dim=1) * 3 / 5)

    ms = tmp_path / "ms13.pth"
    torch.save(resnet_branch(13, 0).backbone.state_dict(), ms)
    with pytest.raises(WeightsError, match="takes 13 bands but the branch has 4"):
        load_branch_weights(resnet_branch(4, 1).backbone, ms, in_chans=4)
    s2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8a", "B9", "B10", "B11", "B12"]
    vis = resnet_branch(3, 1)
    load_branch_weights(vis.backbone, ms, in_chans=3, bands=["B04", "B03", "B02"],
                        source_bands=s2)
    w13 = torch.load(ms, weights_only=True)["conv1.weight"]
    assert torch.allclose(vis.backbone.conv1.weight, w13[:, [3, 2, 1]] * 13 / 3)


def test_unmatched_weights_warn_and_leave_random_init(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.ones(2, 2)}, str(path))
    branch = resnet_branch(3, 0)
    before = branch.backbone.conv1.weight.clone()
    with pytest.warns(PretrainedWeightsWarning, match="randomly initialised"):
        assert load_branch_weights(branch.backbone, path, in_chans=3) == []
    assert torch.equal(branch.backbone.conv1.weight, before)


def test_model_config_weights_are_loaded_into_resnet_branches(tmp_path: Path) -> None:
    layers = (LayerSpec("visible/10m", "visible", 3, 1), LayerSpec("ms/60m", "ms", 2, 6))
    path = tmp_path / "vis.safetensors"
    save_file(resnet_branch(3, 0).backbone.state_dict(), str(path))
    cfg = ModelConfig(layers, 4, backbone="resnet18", width=8, weights={"visible": str(path)})
    torch.manual_seed(5)
    net = MultiBranchNet(cfg)
    expected = resnet_branch(3, 0).backbone.layer1[0].conv1.weight
    assert torch.equal(net.branches["visible/10m"].backbone.layer1[0].conv1.weight, expected)
    out = net.eval()({"visible/10m": torch.randn(1, 3, 12, 12), "ms/60m": torch.randn(1, 2, 2, 2)})
    assert out.shape == (1, 4, 12, 12)


def test_torchgeo_weight_name_without_network_gives_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models._api import WeightsEnum

    def offline(self: WeightsEnum, *args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match="pass its local path") as info:
        load_branch_weights(resnet_branch(13, 0).backbone, "ResNet18_Weights.SENTINEL2_ALL_MOCO",
                            in_chans=13)
    assert isinstance(info.value, OSError) and "hf.co" in str(info.value)
    with pytest.raises(WeightsError, match="neither a weights file nor a torchgeo"):
        load_branch_weights(resnet_branch(3, 0).backbone, "ResNet18_Weights.NOPE", in_chans=3)


class _Payload:
    """Unpickling this creates a marker file: stands in for arbitrary code in a weights file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_pickle_payload_in_pth_file_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker, probe = tmp_path / "pwned", tmp_path / "probe"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(marker)}, path)
    torch.save({"conv1.weight": _Payload(probe)}, tmp_path / "probe.pth")
    torch.load(tmp_path / "probe.pth", weights_only=False)  # the payload is live...
    assert probe.exists()
    with pytest.raises(WeightsError, match="refused to load"):
        load_branch_weights(resnet_branch(3, 0).backbone, path, in_chans=3)
    assert not marker.exists()  # ...but geomm never ran it


def test_spectral_pathway_adds_per_pixel_logits_and_can_classify_alone() -> None:
    net = make_net(spectral=16, spatial_dropout=0.5).eval()
    x = make_inputs()
    spatial, spectral = net.forward_parts(x)
    assert spectral is not None and spectral.shape == spatial.shape == (2, 5, P, P)
    with torch.no_grad():
        torch.testing.assert_close(net(x), spatial + spectral)
    # per pixel: changing one input pixel changes the spectral logits of that pixel only
    x2 = {k: v.clone() for k, v in x.items()}
    x2["visible/10m"][:, :, 10, 20] += 5.0
    with torch.no_grad():
        d = (net.forward_parts(x2)[1] - spectral).abs().sum(dim=(0, 1))
    assert d[10, 20] > 0 and d.sum() == d[10, 20]
    with torch.no_grad():  # a missing modality is zero on the spectral side too
        out = net(x, missing={"visible"})
    assert torch.isfinite(out).all()
    # old bundles (no `spectral` key) rebuild without the pathway
    doc = make_net().config.to_dict()
    doc.pop("spectral"), doc.pop("spatial_dropout")
    assert MultiBranchNet(ModelConfig.from_dict(doc)).spectral is None


def test_per_pixel_valid_masks_zero_a_modality_only_where_it_has_no_data() -> None:
    net = make_net(spectral=8, modality_dropout=0.3).eval()
    x = make_inputs()
    ones = {m: torch.ones(2, 1, P, P) for m in net.modalities}
    with torch.no_grad():
        plain = net(x)
        torch.testing.assert_close(net(x, valid=ones), plain)  # all data: no change
        none = {**ones, "infrared": torch.zeros(2, 1, P, P)}
        torch.testing.assert_close(net(x, valid=none), net(x, missing={"infrared"}))
        half = {**ones, "infrared": torch.ones(2, 1, P, P)}
        half["infrared"][..., P // 2:] = 0  # eastern half without infrared
        out = net(x, valid=half)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[..., P // 2 + 8:], plain[..., P // 2 + 8:])
