"""Natural-image priors (BatchNorm statistics, TV, L2) and objects in boxes (BoxView): the BN statistic
against a hand-written reference, the tap against the layers' own running statistics, the priors'
gradients, the box view's geometry, and that only the box's pixels change."""
import math

import pytest
import torch
import torch.nn as nn

from fastdream.backbones import load_backbone
from fastdream.backbones.base import bn_statistic
from fastdream.engine.dream import DreamConfig, Dreamer
from fastdream.engine.objectives import (BNPrior, BoxView, ClassLogit, Context, L2Prior, Layer, Masked, TVPrior,
                                         sample_views, tv_penalty)
from fastdream.engine.compose import PriorSpec
from fastdream.objective_text import parse_priors, parse_region
from fastdream.errors import FastdreamError


def _bn_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1),
                        nn.BatchNorm2d(5), nn.ReLU())
    for m in net:
        if isinstance(m, nn.BatchNorm2d):  # running statistics that are not the trivial 0 / 1
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net


def _reference_bn(net, x):
    """DeepInversion's statistic written out layer by layer (float64)."""
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    net.eval()
    h = x.double()
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            mu = h.mean((2, 3))
            var = h.var((2, 3), unbiased=False)
            total += (mu - m.running_mean.double()).norm(dim=1) + (var - m.running_var.double()).norm(dim=1)
        h = m.double()(h)
        m.float()
    return total


def test_bn_statistic_matches_reference():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 7, 5, generator=g) * 2 + 0.3
    rm, rv = torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5
    ref = (x.double().mean((2, 3)) - rm.double()).norm(dim=1) + (x.double().var((2, 3), unbiased=False)
                                                                - rv.double()).norm(dim=1)
    # float32 sums over 35 positions: ~1e-6 relative error
    torch.testing.assert_close(bn_statistic(x, rm, rv).double(), ref, rtol=1e-5, atol=1e-5)
    # a non-contiguous input gives the same
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(bn_statistic(xt, rm, rv), bn_statistic(x, rm, rv))


def test_bn_stats_tap_sums_every_batchnorm_layer():
    net = _bn_net()
    bb = load_backbone(net, layers=["2", "5"], mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    got = bb.forward_taps(x, ["bn_stats"])["bn_stats"]
    assert got.shape == (2,)
    torch.testing.assert_close(got.double(), _reference_bn(net, x), rtol=1e-5, atol=1e-5)
    # stopping early at a tap: only the BatchNorm layers before it count
    early = bb.forward_taps(x, ["2", "bn_stats"])["bn_stats"]
    assert (early < got).all()
    # and a gradient flows to the picture
    xg = x.clone().requires_grad_(True)
    bb.forward_taps(xg, ["bn_stats"])["bn_stats"].sum().backward()
    assert xg.grad.abs().sum() > 0


def test_bn_prior_without_batchnorm_is_a_clear_error():
    bb = load_backbone(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), layers=["1"])
    with pytest.raises(FastdreamError, match="no BatchNorm"):
        bb.forward_taps(torch.rand(1, 3, 8, 8), ["bn_stats"])


def test_bn_prior_prefers_photos_on_the_default_backbone():
    # the running statistics come from photos: a photo is closer to them than noise or flat grey
    from fastdream.imageio import load_image

    from conftest import DATA

    bb = load_backbone()
    photo, _ = load_image(DATA / "chelsea_224.jpg")
    noise = torch.rand_like(photo, generator=None)
    grey = torch.full_like(photo, 0.5)
    stat = {k: float(bb.forward_taps(v, ["bn_stats"])["bn_stats"]) for k, v in
            (("photo", photo), ("noise", noise), ("grey", grey))}
    assert stat["photo"] < 0.7 * stat["noise"] and stat["photo"] < 0.7 * stat["grey"], stat


def test_tv_and_l2_priors():
    flat = torch.full((2, 3, 6, 7), 0.5)
    ctx = Context(full_size=(6, 7), image=flat)
    assert float(TVPrior(1.0)({}, ctx).abs().max()) == 0 and float(L2Prior(1.0)({}, ctx).abs().max()) == 0
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 7, generator=g)
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    torch.testing.assert_close(tv_penalty(x), (dx * dx + dy * dy).flatten(1).mean(1))
    torch.testing.assert_close(L2Prior(2.0)({}, Context((6, 7), image=x)), -2.0 * ((2 * x - 1) ** 2).flatten(1).mean(1))
    with pytest.raises(FastdreamError, match="weight"):
        TVPrior(float("nan"))


def test_tv_prior_ignores_the_jitter_seam():
    # a picture that is smooth except across its own border: rolled by the jitter, the border comes
    # inside; the prior must not see it
    ramp = torch.linspace(0, 1, 16)
    x = ramp.view(1, 1, 1, 16).expand(1, 3, 16, 16).contiguous()
    rolled = torch.roll(x, shifts=(0, 5), dims=(2, 3))
    plain = TVPrior(1.0)({}, Context((16, 16), image=x))
    seen = TVPrior(1.0)({}, Context((16, 16), shift=(0, 5), image=rolled))
    torch.testing.assert_close(seen, plain, rtol=0.2, atol=0)  # same smooth picture, one column fewer counted
    naive = -tv_penalty(rolled)
    assert float(naive) < 3 * float(plain)  # the seam would have dominated


def test_sample_views_geometry():
    # a picture whose pixels encode their own coordinates: the view of a box shows that box
    H, W = 40, 60
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pic = torch.stack([xx / W, yy / H, torch.zeros_like(xx)])[None]
    box = (0.5, 0.25, 1.0, 0.75)  # x0, y0, x1, y1
    v, win = sample_views(pic, box, (20, 30))
    assert v.shape == (1, 3, 20, 30)
    torch.testing.assert_close(win, torch.tensor([[30.0, 10.0, 60.0, 30.0]]))
    assert abs(float(v[0, 0].min()) - 0.5) < 0.03 and abs(float(v[0, 0].max()) - 1.0) < 0.03
    assert abs(float(v[0, 1].min()) - 0.25) < 0.03 and abs(float(v[0, 1].max()) - 0.75) < 0.03
    # random views: n of them, windows that move by at most the jitter and scale
    g = torch.Generator().manual_seed(0)
    v, win = sample_views(pic, box, (20, 30), n=5, generator=g, jitter=0.1, scale=(0.8, 1.25), flip=True)
    assert v.shape == (5, 3, 20, 30)
    cx = (win[:, 0] + win[:, 2]) / 2
    assert ((cx - 45).abs() <= 0.1 * 30 + 1e-4).all()
    assert ((win[:, 2] - win[:, 0] >= 30 / 1.25 - 1e-3) & (win[:, 2] - win[:, 0] <= 30 / 0.8 + 1e-3)).all()



def test_sample_views_rotation_turns_in_picture_pixels():
    # pixels that encode their own coordinates on a wide picture: a turned view keeps the distances of
    # the unturned one in picture pixels (the box's aspect holds), and turns by at most the angle
    H, W = 60, 120
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pic = torch.stack([xx / W, yy / H, torch.zeros_like(xx)])[None].double()
    box = (0.35, 0.3, 0.65, 0.7)
    g = torch.Generator().manual_seed(3)
    v, _ = sample_views(pic, box, (24, 24), n=6, generator=g, rotate=30.0)
    flat, _ = sample_views(pic, box, (24, 24))
    cx, cy = 0.5 * W, 0.5 * H
    dx, dy = v[:, 0] * W - cx, v[:, 1] * H - cy             # offsets from the box's centre, picture pixels
    fx, fy = flat[0, 0] * W - cx, flat[0, 1] * H - cy
    torch.testing.assert_close(dx ** 2 + dy ** 2, (fx ** 2 + fy ** 2).expand_as(dx), rtol=1e-5, atol=1e-4)
    ang = torch.atan2(fx * dy - fy * dx, fx * dx + fy * dy)  # the turn of each pixel, per view
    inner = (fx ** 2 + fy ** 2) > 4
    per_view = torch.stack([a[inner].mean() for a in ang])
    assert (per_view.abs() <= torch.deg2rad(torch.tensor(30.0, dtype=per_view.dtype)) + 1e-6).all()
    assert per_view.abs().max() > 0.1                       # some view did turn
    assert float((ang[:, inner] - per_view[:, None]).abs().max()) < 1e-4   # one rigid turn per view
    # rotate=0 draws the same moves, scales and mirrors as before the option existed
    a, _ = sample_views(pic, box, (24, 24), 3, torch.Generator().manual_seed(1), 0.1, (0.8, 1.2), True)
    b, _ = sample_views(pic, box, (24, 24), 3, torch.Generator().manual_seed(1), 0.1, (0.8, 1.2), True, 0.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(FastdreamError, match="rotate"):
        BoxView(ClassLogit(1), box=box, rotate=90)

def _photo(h, w):
    from fastdream.imageio import load_image

    from conftest import DATA

    x, _ = load_image(DATA / "chelsea_224.jpg")
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True).clamp(0, 1)


def test_box_view_changes_only_its_box():
    bb = load_backbone()
    x = _photo(96, 128)
    obj = BoxView(ClassLogit(107, log_prob=True) + BNPrior(0.002), box=(0.2, 0.1, 0.7, 0.6), size=64)
    out, _ = Dreamer(bb, obj, DreamConfig(octaves=1, steps=6, jitter=6, step_size=0.004)).run(x)
    changed = (out - x).abs().sum(1)[0] > 0
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    assert int(rows.min()) >= round(0.1 * 96) and int(rows.max()) < round(0.6 * 96)
    assert int(cols.min()) >= round(0.2 * 128) and int(cols.max()) < round(0.7 * 128)
    assert changed[20:50, 35:80].all()
    # the objective climbed
    d = Dreamer(bb, obj, DreamConfig())
    assert d.evaluate(out) > d.evaluate(x)


def test_box_view_is_evaluated_once_on_tiled_pictures():
    bb = load_backbone()
    x = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(2))
    obj = BoxView(ClassLogit(1), box=(0.2, 0.2, 0.8, 0.8), size=48) + Layer("block2")
    whole = Dreamer(bb, obj, DreamConfig(channels_last=False))
    tiled = Dreamer(bb, obj, DreamConfig(tile=48, tile_overlap=16, channels_last=False))
    assert tiled._layout(80, 80) is not None
    v_box = Dreamer(bb, BoxView(ClassLogit(1), box=(0.2, 0.2, 0.8, 0.8), size=48), DreamConfig()).evaluate(x)
    # the box view's value is the same whether the rest is tiled or not
    layer_whole = Dreamer(bb, Layer("block2"), DreamConfig()).evaluate(x)
    layer_tiled = Dreamer(bb, Layer("block2"), DreamConfig(tile=48, tile_overlap=16)).evaluate(x)
    assert math.isclose(whole.evaluate(x), v_box + layer_whole, rel_tol=1e-4)
    assert math.isclose(tiled.evaluate(x), v_box + layer_tiled, rel_tol=1e-4)


def test_parse_priors():
    assert parse_priors(None) is None and parse_priors([]) is None
    assert parse_priors(["none"]) == []
    assert parse_priors(["bn", "tv:0.5", "L2:2"]) == [PriorSpec("bn"), PriorSpec("tv", 0.5), PriorSpec("l2", 2.0)]
    for bad, msg in [(["bn:abc"], "must be a number"), (["bn:-1"], ">= 0"), (["bn:inf"], "finite"),
                     (["none", "bn"], "alone"), (["bnn"], "bn")]:
        with pytest.raises(FastdreamError, match=msg):
            parse_priors(bad)


def test_region_boxes_are_checked():
    size = (100, 200)  # H, W
    assert parse_region("0.1,0.2,0.5,0.6", size, "--class") == (0.1, 0.2, 0.5, 0.6)   # x0, y0, x1, y1
    assert parse_region("20,10,100,60", size, "--class") == (0.1, 0.1, 0.5, 0.6)
    for bad in ["0.5,0.1,0.2,0.6",      # inverted
                "0.2,0.2,0.2,0.6",      # empty
                "10,10,300,50",         # outside the picture (pixels)
                "-0.1,0,0.5,0.5",       # outside (fractions)
                "10,10,12,50"]:         # 2 pixels wide
        with pytest.raises(FastdreamError, match="--class region"):
            parse_region(bad, size, "--class")


def test_invert_and_visualize_take_priors():
    from fastdream.featvis.invert import InvertConfig, invert_layers
    from fastdream.featvis.visualize import VisualizeConfig, optimize, visualize_priors
    from fastdream.objective_text import parse_targets
    from fastdream.metrics import Judge

    bb = load_backbone()
    x = _photo(48, 64)
    seen = []

    def prior(layer):
        seen.append(layer)
        return BNPrior(2e-6) if layer == "block3" else None

    pics, rows = invert_layers(bb, x, ["block1", "block3"], InvertConfig(steps=3), judge=Judge(), prior=prior)
    assert seen == ["block1", "block3"] and [r["prior"] for r in rows] == ["none", "BNPrior(2e-06)"]
    assert all(r["lite2_distance"] > 0 for r in rows) and pics[1].shape == x.shape
    p = visualize_priors(None)
    assert repr(p) == "BNPrior(0.002)" and visualize_priors([]) is None
    imgs, _ = optimize(bb, parse_targets(bb, (48, 48), ["goldfish"]), VisualizeConfig(size=(48, 48), steps=2, prior=p))
    assert imgs.shape == (1, 3, 48, 48) and torch.isfinite(imgs).all()


def test_critic_trains_and_scores(tmp_path, monkeypatch):
    from fastdream.engine.critic import CriticPrior, save_critic, train_critic

    g = torch.Generator().manual_seed(0)
    smooth = [torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(48, 48), mode="bilinear")
              for _ in range(3)]
    noisy = [torch.rand(1, 3, 48, 48, generator=g) for _ in range(3)]
    critic, stats = train_critic(smooth, noisy, steps=60, batch=8)
    assert stats["accuracy"] > 0.9  # smooth against noise: an easy task
    prior = CriticPrior(1.0, critic=critic)
    p_smooth = float(prior.penalty({}, Context((48, 48), image=smooth[0])))
    p_noisy = float(prior.penalty({}, Context((48, 48), image=noisy[0])))
    assert p_smooth < p_noisy
    path = tmp_path / "critic.pt"
    save_critic(critic, path)
    monkeypatch.setenv("FASTDREAM_CRITIC", str(path))
    assert abs(float(CriticPrior(1.0).penalty({}, Context((48, 48), image=smooth[0]))) - p_smooth) < 1e-5
    monkeypatch.delenv("FASTDREAM_CRITIC")
    with pytest.raises(FastdreamError, match="no critic ships"):
        CriticPrior(1.0)


def test_class_in_a_box_gets_four_robust_views_per_step():
    from fastdream.engine.compose import CLASS_VIEW, Term, dream_objective

    obj = dream_objective([Term(ClassLogit("goldfish"), region=(0.1, 0.2, 0.6, 0.9))])
    views = [o for o in _walk(obj) if isinstance(o, BoxView)]
    assert len(views) == 1
    v = views[0]
    assert (v.views, v.jitter, v.scale, v.flip) == (CLASS_VIEW["views"], CLASS_VIEW["jitter"], CLASS_VIEW["scale"], True)
    assert v.views == 4 and v.scale == (0.75, 1.25)
    # the four views are one batch: random windows that differ, inside the allowed moves and scales
    g = torch.Generator().manual_seed(0)
    pic = torch.rand(1, 3, 60, 80, generator=g)
    batch = v.view(pic, g)
    assert batch.shape[0] == 4
    assert not torch.allclose(batch[0], batch[1])


def _walk(obj):
    yield obj
    for _, o in getattr(obj, "terms", ()):  # a Sum: (weight, objective) pairs
        yield from _walk(o)
    if getattr(obj, "inner", None) is not None:
        yield from _walk(obj.inner)


def test_box_view_seen_by_another_backbone():
    """``BoxView(backbone=...)``: that network, not the dream's, sees the view."""
    bb = load_backbone()
    other = load_backbone("efficientnet-lite1")
    x = _photo(64, 80)
    box = (0.2, 0.1, 0.8, 0.9)
    calls = []
    orig = other.forward_taps

    def counting(v, taps, *a, **k):
        calls.append(tuple(v.shape))
        return orig(v, taps, *a, **k)

    other.forward_taps = counting
    try:
        seen = Dreamer(bb, BoxView(ClassLogit(1), box=box, size=48, backbone=other), DreamConfig()).evaluate(x)
        own = Dreamer(bb, BoxView(ClassLogit(1), box=box, size=48), DreamConfig()).evaluate(x)
        direct = Dreamer(other, BoxView(ClassLogit(1), box=box, size=48), DreamConfig()).evaluate(x)
    finally:
        other.forward_taps = orig
    assert calls and all(c[-2:] == calls[0][-2:] for c in calls)
    assert math.isclose(seen, direct, rel_tol=1e-5) and not math.isclose(seen, own, rel_tol=1e-2)
    assert "backbone=efficientnet-lite1" in repr(BoxView(ClassLogit(1), box=box, backbone=other))
    with pytest.raises(FastdreamError, match="must be a Backbone"):
        BoxView(ClassLogit(1), box=box, backbone="efficientnet-lite1")


def test_class_in_a_box_seen_by_two_networks():
    from fastdream.engine.compose import Term, dream_objective

    bb = load_backbone()
    other = load_backbone("efficientnet-lite1")
    obj = dream_objective([Term(ClassLogit("goldfish"), 3.0, region=(0.1, 0.2, 0.6, 0.9))], class_backbones=[other])
    views = [o for o in _walk(obj) if isinstance(o, BoxView)]
    assert [v.backbone for v in views] == [None, other]
    weights = [w for w, o in obj.terms]
    assert weights == [1.5, 1.5]
    # the sum is the mean of what either network sees, each through its own four views
    x = _photo(48, 64)
    both = Dreamer(bb, obj, DreamConfig()).evaluate(x)
    a = Dreamer(bb, views[0], DreamConfig()).evaluate(x)
    b = Dreamer(bb, views[1], DreamConfig()).evaluate(x)
    assert math.isclose(both, 1.5 * (a + b), rel_tol=1e-5)
    with pytest.raises(FastdreamError, match="must be a Backbone"):
        dream_objective([Term(ClassLogit(1), region=(0, 0, 1, 1))], class_backbones=["efficientnet-lite1"])


def test_class_backbone_names_and_their_classes():
    from types import SimpleNamespace

    from fastdream.objective_text import build_objective, class_backbone_names

    assert class_backbone_names(None) == ["efficientnet-lite1"]
    assert class_backbone_names([], "EfficientNet-Lite0") == ["efficientnet-lite1"]
    assert class_backbone_names(None, "my.pt") == [] and class_backbone_names(None, "efficientnet-lite3") == []
    assert class_backbone_names(["none"]) == [] and class_backbone_names(["None"], "my.pt") == []
    assert class_backbone_names(["efficientnet-lite2", "b.pt"], "my.pt") == ["efficientnet-lite2", "b.pt"]
    with pytest.raises(FastdreamError, match="none goes alone"):
        class_backbone_names(["none", "efficientnet-lite1"])
    bb = load_backbone()
    tiny = SimpleNamespace(name="tiny", num_classes=10, forward_taps=None)
    with pytest.raises(FastdreamError, match="--class-backbone tiny: it has 10 classes, the dream's backbone 1000"):
        build_objective(bb, (64, 64), classes=["goldfish@0,0,1,1"], class_backbones=[tiny])


def test_box_step_area_scales_the_step_by_the_boxes_share():
    """``DreamConfig(box_step="area")``: where every term is regional, the step is multiplied by the
    regions' share of the picture (the feathered mask's mean), with ``"sqrt"`` by its square root; the
    default ``"auto"`` is sqrt for objects drawn in boxes and the picture's step for a masked objective;
    a whole-picture objective is unaffected."""
    bb = load_backbone()
    g = torch.Generator().manual_seed(3)
    x = 0.5 + 0.05 * torch.randn(1, 3, 64, 80, generator=g)  # mid-range: no clamping in one step
    obj = BoxView(ClassLogit(1), box=(0.1, 0.2, 0.6, 0.7), size=48)
    cfg = dict(octaves=1, steps=1, jitter=0, step_size=0.01, decorrelate=False, channels_last=False)

    def change(o, **kw):
        y, _ = Dreamer(bb, o, DreamConfig(**cfg, **kw)).run(x.clone())
        return y - x

    pic = change(obj, box_step="picture")
    share = float(obj.pixel_mask(Context((64, 80)), x.device).mean())
    assert 0.15 < share < 0.25
    assert torch.allclose(change(obj, box_step="area"), share * pic, atol=1e-5)
    assert torch.allclose(change(obj, box_step="sqrt"), share ** 0.5 * pic, atol=1e-5)
    assert torch.allclose(change(obj), share ** 0.5 * pic, atol=1e-5)  # auto: sqrt for a box
    assert Dreamer(bb, obj).box_step == "sqrt"
    masked = Masked(Layer("block3"), box=(0.1, 0.2, 0.6, 0.7))
    assert Dreamer(bb, masked).box_step == "picture"  # auto: a masked objective keeps the picture's step
    assert torch.equal(change(masked), change(masked, box_step="picture"))
    assert Dreamer(bb, masked, DreamConfig(box_step="sqrt")).box_step == "sqrt"
    layer = Layer("block3")
    assert torch.equal(change(layer), change(layer, box_step="area"))
    assert Dreamer(bb, layer, DreamConfig(box_step="area")).box_step == "picture"
    with pytest.raises(FastdreamError, match="box step must be one of auto, picture, sqrt, area"):
        DreamConfig(box_step="box").validate()
