"""Backbones: the embedded EfficientNet-Lite0, taps with early stop, user modules, checkpoints, class names,
and the `fastdream layers` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import DATA
from fastdream.backbones import (
    Backbone,
    ClassNames,
    EfficientNetLite,
    imagenet_class_names,
    load_backbone,
    save_checkpoint,
)
from fastdream.backbones import efficientnet_lite as effnet
from fastdream.errors import FastdreamError

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat

# Output shapes of EfficientNet-Lite0 at 224x224, from the architecture's block table.
LITE0_224 = {
    "stem": (32, 112, 112),
    **{f"block{i}": s for i, s in enumerate(
        [(16, 112, 112), (24, 56, 56), (24, 56, 56), (40, 28, 28), (40, 28, 28)]
        + [(80, 14, 14)] * 3 + [(112, 14, 14)] * 3 + [(192, 7, 7)] * 4 + [(320, 7, 7)]
    )},
    "head": (1280, 7, 7),
    "logits": (1000,),
}
# Cumulative stride after each tap (TF "SAME" padding: every stride-2 layer gives ceil(size / 2)).
LITE0_STRIDES = {"stem": 1, "block0": 1, "block1": 2, "block2": 2, "block3": 3, "block4": 3,
                 **{f"block{i}": 4 for i in range(5, 11)}, **{f"block{i}": 5 for i in range(11, 16)}, "head": 5}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread is as fast, and on a shared, loaded CPU OpenMP's spinning
    threads make two up to 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone()


def _cat_image() -> torch.Tensor:  # [1, 3, 224, 224] in [0, 1]
    img = np.asarray(Image.open(DATA / "chelsea_224.jpg").convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None]


# -- the embedded network ----------------------------------------------------------------------


def test_efficientnet_lite0_classifies_cat(lite0):
    x = _cat_image()
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        probs = lite0(x).softmax(dim=1)[0]
    top3 = probs.topk(3).indices.tolist()
    names = [lite0.class_names[i] for i in top3]
    assert top3[0] in CAT_CLASSES, names
    assert set(top3) <= set(CAT_CLASSES), names
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.6


def test_efficientnet_lite0_weights_load_strict():
    state = torch.load(effnet.default_weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite("efficientnet-lite0")
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert effnet.infer_arch(state) == "efficientnet-lite0"
    assert sum(p.numel() for p in net.parameters()) == sum(v.numel() for k, v in state.items()
                                                           if not k.endswith("num_batches_tracked") and "running" not in k)


@pytest.mark.parametrize("arch,blocks,last", [("efficientnet-lite1", 21, 320), ("efficientnet-lite2", 21, 352),
                                              ("efficientnet-lite4", 30, 448)])
def test_efficientnet_lite_scaled_archs(arch, blocks, last):
    with torch.device("meta"):
        net = EfficientNetLite(arch)
    assert len(net._blocks) == blocks
    assert net.specs[-1].cout == last
    assert net._conv_stem.out_channels == 32 and net._conv_head.out_channels == 1280  # Lite: fixed stem/head
    assert effnet.infer_arch(net.state_dict()) == arch
    assert set(net.tap_aliases()) == {f"stage{i}" for i in range(1, 8)}


def test_backbone_is_frozen(lite0):
    assert not lite0.training
    assert all(not p.requires_grad for p in lite0.parameters())


# -- taps --------------------------------------------------------------------------------------


def test_backbone_layers_shapes_224(lite0):
    assert dict(lite0.layers(224)) == LITE0_224
    assert lite0.tap_names() == list(LITE0_224)


@pytest.mark.parametrize("size", [97, (61, 130)])
def test_backbone_layers_shapes_odd_size(lite0, size):
    h, w = (size, size) if isinstance(size, int) else size
    table = dict(lite0.layers(size))
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        real = lite0.forward_taps(x, list(table))
    for name, shape in table.items():
        assert tuple(real[name].shape[1:]) == shape, name
        if name in LITE0_STRIDES:
            k = LITE0_STRIDES[name]
            ch, ch_w = h, w
            for _ in range(k):
                ch, ch_w = math.ceil(ch / 2), math.ceil(ch_w / 2)
            assert shape == (LITE0_224[name][0], ch, ch_w), name


def test_backbone_forward_taps_stops_early(lite0):
    calls = []
    handles = [b.register_forward_pre_hook(lambda m, i, n=n: calls.append(n)) for n, b in enumerate(lite0.model._blocks)]
    head = lite0.model._conv_head.register_forward_pre_hook(lambda m, i: calls.append("head"))
    try:
        out = lite0.forward_taps(torch.rand(2, 3, 64, 64), ["block3", "block1"])
        assert calls == [0, 1, 2, 3]
        assert out["block3"].shape == (2, 40, 8, 8) and list(out) == ["block3", "block1"]
        calls.clear()
        out = lite0.forward_taps(torch.rand(1, 3, 64, 64), ["block3", "logits"])
        assert calls == [*range(16), "head"]
        assert out["logits"].shape == (1, 1000)
    finally:
        for h in handles + [head]:
            h.remove()


def test_backbone_forward_taps_logits_match_forward(lite0):
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(lite0.forward_taps(x, ["logits"])["logits"], lite0(x))


def test_backbone_aliases(lite0):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = lite0.forward_taps(x, ["stage3", "block4"])
    torch.testing.assert_close(out["stage3"], out["block4"])


def test_backbone_gradient_reaches_input(lite0):
    x = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(3)).requires_grad_()
    out = lite0.forward_taps(x, ["block5"])
    out["block5"].square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lite0.parameters())


def test_backbone_channels_last_input(lite0):
    x = torch.rand(2, 3, 72, 90, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = lite0.forward_taps(x, ["block7", "logits"])
        b = lite0.forward_taps(x.contiguous(memory_format=torch.channels_last), ["block7", "logits"])
    # Same math, different summation order in the convolutions: float32 rounding only.
    torch.testing.assert_close(a["block7"], b["block7"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-4, atol=1e-4)


def test_backbone_bad_tap_and_input(lite0):
    with pytest.raises(FastdreamError, match="did you mean 'block3'"):
        lite0.forward_taps(torch.rand(1, 3, 32, 32), ["blok3"])
    with pytest.raises(FastdreamError, match=r"\[B, 3, H, W\].*\(1, 1, 32, 32\)"):
        lite0.forward_taps(torch.rand(1, 1, 32, 32), ["block3"])
    with pytest.raises(FastdreamError, match="float"):
        lite0(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# -- user modules ------------------------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_backbone_custom_module_taps():
    net = TinyNet()
    bb = load_backbone(net, layers=["features.0", "features.2", "logits"], class_names=["a", "b", "c", "d"])
    assert bb.tap_names() == ["features.0", "features.2", "logits"]
    assert bb.layers(31) == [("features.0", (8, 31, 31)), ("features.2", (16, 16, 16)), ("logits", (4,))]
    ran_fc = []
    h = net.fc.register_forward_pre_hook(lambda m, i: ran_fc.append(1))
    x = torch.rand(2, 3, 20, 20).requires_grad_()
    out = bb.forward_taps(x, ["features.0"])
    h.remove()
    assert out["features.0"].shape == (2, 8, 20, 20) and not ran_fc
    out["features.0"].sum().backward()
    assert x.grad.abs().sum() > 0
    assert bb.class_index("C") == 2 and bb.num_classes == 4
    with pytest.raises(FastdreamError, match="did you mean 'features.2'"):
        load_backbone(TinyNet(), layers=["feature.2"])


@pytest.mark.slow
def test_backbone_layers_on_meta_device(monkeypatch):
    """Big sizes get their shapes from the meta device: same table, nothing computed."""
    bb = load_backbone(TinyNet(), layers=["features.2", "logits"])
    real = bb.layers((33, 40))
    monkeypatch.setattr(Backbone, "META_PIXELS", 0)
    assert bb.layers((33, 40)) == real == [("features.2", (16, 17, 20)), ("logits", (4,))]
    assert all(p.device.type == "cpu" for p in bb.parameters())


def test_backbone_custom_module_default_layers():
    bb = load_backbone(TinyNet())
    assert bb.tap_names() == ["features", "features.0", "features.1", "features.2", "pool", "fc", "logits"]
    assert bb.num_classes == 4 and bb.class_names[3] == "class 3"


# -- checkpoints -------------------------------------------------------------------------------


class NotATensor:  # pickled by a test: fastdream must refuse to unpickle it
    def __init__(self):
        self.value = 1


def test_checkpoint_round_trip_with_new_head(lite0, tmp_path):
    bb = load_backbone()
    bb.replace_classifier(["red panda", "cat, house cat", "teapot"])
    torch.nn.init.normal_(bb.model._fc.weight, generator=torch.Generator().manual_seed(5))
    path = save_checkpoint(bb, tmp_path / "ft" / "mine.pt")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["mine.pt"]  # no temporary left
    back = load_backbone(path)
    assert back.arch == "efficientnet-lite0" and back.num_classes == 3
    assert back.class_names == ["red panda", "cat", "teapot"]
    assert back.class_index("house cat") == 1 and back.class_index("Teapot") == 2
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(back(x), bb(x), rtol=0, atol=0)
    assert all(not p.requires_grad for p in back.parameters())


def test_checkpoint_raw_state_dict_file_loads():
    bb = load_backbone(effnet.default_weights_path())
    assert bb.arch == "efficientnet-lite0" and bb.class_names[281] == "tabby"


def test_checkpoint_rejects_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "thing": NotATensor()}, path)
    with pytest.raises(FastdreamError) as e:
        load_backbone(path)
    msg = str(e.value)
    assert "pickled Python objects" in msg and "NotATensor" in msg and "state_dict()" in msg
    assert "\n" not in msg


def test_checkpoint_bad_files(tmp_path):
    with pytest.raises(FastdreamError, match="not found"):
        load_backbone(tmp_path / "missing.pt")
    with pytest.raises(FastdreamError, match="not a PyTorch checkpoint"):
        load_backbone(DATA / "chelsea_224.jpg")
    odd = tmp_path / "odd.pt"
    torch.save({"conv.weight": torch.zeros(2, 3, 1, 1)}, odd)
    with pytest.raises(FastdreamError, match="does not know"):
        load_backbone(odd)
    wrong = tmp_path / "wrong.pt"
    torch.save({"fastdream_backbone": {"arch": "resnet50", "num_classes": 2}, "state_dict": {"w": torch.zeros(1)}}, wrong)
    with pytest.raises(FastdreamError, match="unknown architecture 'resnet50'"):
        load_backbone(wrong)
    state = EfficientNetLite().state_dict()
    state["_blocks.3._bn1.weight"] = torch.zeros(7)
    mismatch = tmp_path / "mismatch.pt"
    torch.save({"fastdream_backbone": {"arch": "efficientnet-lite0", "num_classes": 1000}, "state_dict": state}, mismatch)
    with pytest.raises(FastdreamError, match="do not fit") as e:
        load_backbone(mismatch)
    assert "\n" not in str(e.value)


def test_load_backbone_bad_names():
    with pytest.raises(FastdreamError, match="unknown backbone .efficientnet-lite.; did you mean"):
        load_backbone("efficientnet-lite")
    with pytest.raises(FastdreamError, match="did you mean 'block5'"):
        load_backbone(layers=["blck5"])


def test_torchvision_needs_torchvision_or_local_weights():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(FastdreamError, match="needs torchvision"):
            load_backbone("torchvision:resnet18")
        pytest.skip("torchvision not installed: only its absence is tested")
    with pytest.raises(FastdreamError, match="did you mean"):
        load_backbone("torchvision:resnet1800")


# -- class names -------------------------------------------------------------------------------


def test_imagenet_class_names(lite0):
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby" and names[999] == "toilet tissue"
    assert lite0.class_names == names and lite0.num_classes == 1000


@pytest.mark.parametrize("query,index", [("tabby", 281), ("Tabby Cat", 281), ("tabby_cat", 281), ("tiger cat", 282),
                                         ("EGYPTIAN CAT", 285), (285, 285), ("285", 285), ("Cardigan", 264),
                                         ("cardigan", 474), ("partridge", 86), ("goldfish", 1)])
def test_class_index_lookup(lite0, query, index):
    assert lite0.class_index(query) == index


def test_class_index_errors(lite0):
    with pytest.raises(FastdreamError, match="did you mean 'tabby'"):
        lite0.class_index("tabbby")
    with pytest.raises(FastdreamError, match="ambiguous.*134.*517"):
        lite0.class_index("crane")
    with pytest.raises(FastdreamError, match="out of range"):
        lite0.class_index(1000)
    assert ClassNames.from_names(["x, y"]).index("y") == 0


# -- `fastdream layers` ------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    """``fastdream`` with only the `layers` command wired (the others live in other modules)."""
    from fastdream.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMANDS", {"layers": "layers"})
    return cli_main.main


def test_cli_layers_table(cli, capsys):
    assert cli(["layers"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["stem"] == ["32x112x112"]
    assert rows["block5"] == ["80x14x14"]
    assert rows["block15"] == ["320x7x7", "stage7"]
    assert rows["head"] == ["1280x7x7"] and rows["logits"] == ["1000"]
    assert len(rows) == 19


def test_cli_layers_json_odd_size(cli, capsys):
    assert cli(["layers", "--size", "97", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    layers = {d["name"]: d["shape"] for d in doc["layers"]}
    assert doc["input"] == [3, 97, 97] and layers["stem"] == [32, 49, 49] and layers["block15"] == [320, 4, 4]
    assert layers["logits"] == [1000]


@pytest.mark.parametrize("argv,needle", [(["layers", "--backbone", "efficientnet-lite9"], "did you mean"),
                                         (["layers", "--backbone", "missing/weights.pt"], "not found"),
                                         (["layers", "--size", "0"], "--size")])
def test_cli_layers_bad_input(cli, capsys, argv, needle):
    assert cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastdream layers: error:") and needle in lines[0]
    assert "Traceback" not in captured.err
