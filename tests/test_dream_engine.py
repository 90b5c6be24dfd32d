"""The dream engine on small networks whose gradients can be reasoned about exactly, and on the
embedded backbone: objectives, masks, guides, octaves, tiling equivalence, seeds, skipped steps."""

import pytest
import torch
import torch.nn as nn

from fastdream.backbones import load_backbone
from fastdream.engine.dream import DreamConfig, Dreamer, octave_sizes
from fastdream.engine.objectives import Channel, ClassLogit, Guide, Layer, Neuron, Objective, Sum
from fastdream.errors import FastdreamError


def pointwise_backbone(seed=0):
    """A network of 1x1 convolutions: every output position depends on its own pixel only, so the
    gradient of a masked objective is exactly zero outside the mask, and tiles don't change anything."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Tanh(), nn.Conv2d(8, 6, 1))
    return load_backbone(net, layers=["0", "1", "2"])


def conv_backbone(seed=0):
    """3x3 convolutions: not shift-equivariant under the jitter's roll at the borders, so seeds matter."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 6, 3, stride=2, padding=1))
    return load_backbone(net, layers=["2"])


def picture(h=40, w=56, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.6 + 0.2


def test_objective_algebra():
    a, b = Layer("2"), Channel("1", [1, 3])
    s = a + 0.5 * b - Layer("0", "mean")
    assert isinstance(s, Sum) and [w for w, _ in s.terms] == [1.0, 0.5, -1.0]
    assert s.taps() == {"0", "1", "2"}
    assert (0 + a) is a
    bb = pointwise_backbone()
    x = picture()
    from fastdream.engine.objectives import Context

    acts = bb.forward_taps(x, ["0", "1", "2"])
    ctx = Context(tuple(x.shape[-2:]))
    expected = acts["2"].square().mean() + 0.5 * acts["1"][:, [1, 3]].mean() - acts["0"].mean()
    torch.testing.assert_close(s(acts, ctx), expected.view(1))


def test_layer_kinds():
    from fastdream.engine.objectives import Context

    a = torch.randn(2, 4, 3, 5)
    ctx = Context((3, 5))
    for kind, ref in [("l2", a.square()), ("mean", a), ("l1", a.abs()), ("abs_l2", a.abs() + a.square())]:
        torch.testing.assert_close(Layer("x", kind)({"x": a}, ctx), ref.flatten(1).mean(1))
    with pytest.raises(FastdreamError, match="unknown layer objective kind"):
        Layer("x", "cube")


@pytest.mark.parametrize("shift", [(0, 0), (5, -7), (-13, 30)])
def test_masked_gradient_stays_in_the_box(shift):
    bb = pointwise_backbone()
    x = picture()
    box = (0.5, 0.25, 1.0, 0.75)  # x0, y0, x1, y1: right half, middle rows
    d = Dreamer(bb, Layer("2").restrict(box=box), DreamConfig(octaves=1, steps=1, jitter=0))
    g, _ = d.gradient(x, shift)
    g = torch.roll(g, shifts=(-shift[0], -shift[1]), dims=(2, 3)).abs().sum(1)[0]  # picture coordinates
    H, W = x.shape[-2:]
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[10:30, 28:56] = True
    feather = torch.zeros(H, W, dtype=torch.bool)  # the box's edges are feathered by 1 pixel here
    feather[9:31, 27:56] = True
    assert float(g[~feather].max()) == 0.0
    assert float(g[inside].min()) > 0.0


def test_neuron_follows_the_jitter():
    bb = pointwise_backbone()
    x = picture()
    d = Dreamer(bb, Neuron("2", 1, 7, 9), DreamConfig(octaves=1, steps=1))
    for shift in [(0, 0), (3, -4), (40, 60)]:
        g, _ = d.gradient(x, shift)
        g = torch.roll(g, shifts=(-shift[0], -shift[1]), dims=(2, 3)).abs().sum(1)[0]
        nz = torch.nonzero(g)
        assert nz.tolist() == [[7, 9]]


def test_guide_pulls_features_towards_the_guide():
    bb = pointwise_backbone()
    x = picture(seed=1)
    guide = picture(seed=2).flip(-1) * 0.5 + 0.4
    with torch.no_grad():
        gf = bb.forward_taps(guide, ["2"])["2"]
    obj = Guide("2", gf, "l2")
    d = Dreamer(bb, obj, DreamConfig(octaves=1, steps=15, step_size=0.02, jitter=0))
    out, _ = d.run(x)
    assert d.evaluate(out) > d.evaluate(x)
    with pytest.raises(FastdreamError, match="similarity"):
        Guide("2", gf, "cosine")


def test_octave_sizes():
    assert octave_sizes(1080, 1920, 4, 1.4, 48) == [(1080, 1920), (771, 1371), (551, 980), (394, 700)]
    assert octave_sizes(60, 60, 5, 1.4, 48) == [(60, 60)]


def test_dream_raises_the_objective_and_is_seeded():
    bb = conv_backbone()
    x = picture()
    cfg = DreamConfig(octaves=2, octave_scale=1.3, steps=5, step_size=0.02, jitter=4, sigma=0.8, min_octave_size=8)
    d = Dreamer(bb, Layer("2"), cfg)
    a, stats = d.run(x)
    b, _ = Dreamer(bb, Layer("2"), cfg).run(x)
    c, _ = Dreamer(bb, Layer("2"), DreamConfig(**{**cfg.__dict__, "seed": 7})).run(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert d.evaluate(a) > 1.5 * d.evaluate(x)
    assert stats.steps_done == 10 and stats.skipped_steps == 0
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_tile_at_least_the_picture_equals_untiled():
    bb = pointwise_backbone()
    x = picture(48, 64)
    base = DreamConfig(octaves=2, octave_scale=1.5, steps=3, step_size=0.02, jitter=6, min_octave_size=8)
    untiled, _ = Dreamer(bb, Layer("2"), base).run(x)
    tiled, _ = Dreamer(bb, Layer("2"), DreamConfig(**{**base.__dict__, "tile": 64, "tile_overlap": 8})).run(x)
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-6)


def test_small_tiles_match_untiled_on_a_pointwise_network():
    # every tile sees the same per-pixel gradient; the blend weights sum to one, so tiling only rescales
    # the gradient uniformly, which the normalization removes
    bb = pointwise_backbone()
    x = picture(50, 70)
    # fp32: in bf16 the rounding of each convolution differs between tile and whole picture by ~1e-3
    base = DreamConfig(octaves=1, steps=3, step_size=0.02, jitter=5, precision="fp32")
    untiled, _ = Dreamer(bb, Layer("2"), base).run(x)
    tiled, _ = Dreamer(bb, Layer("2"), DreamConfig(**{**base.__dict__, "tile": 32, "tile_overlap": 8})).run(x)
    # 1e-4: the convolutions run on 32x32 tiles and on the whole picture with different float summation
    # orders (relative 1e-6 on the gradient), amplified where the gradient is tiny, over 3 steps of 0.02
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-4)


class _NaNObjective(Objective):
    def taps(self):
        return {"2"}

    def __call__(self, acts, ctx):
        return acts["2"].mean() * torch.tensor(float("nan")).expand(acts["2"].shape[0])


def test_nan_gradients_are_skipped_and_counted():
    bb = pointwise_backbone()
    x = picture()
    out, stats = Dreamer(bb, _NaNObjective(), DreamConfig(octaves=1, steps=4)).run(x)
    assert stats.skipped_steps == 4
    assert torch.equal(out, x)


def test_config_validation_messages():
    for kw, msg in [({"octaves": 0}, "octaves"), ({"step_size": -1.0}, "step size"), ({"norm": "l3"}, "normalization"),
                    ({"sigma": (1, 2, 3, 4, 5)}, "at most 4"), ({"smooth_kernel": 4}, "odd"),
                    ({"tile": 64, "tile_overlap": 64}, "overlap"), ({"recursion_blend": 2.0}, "blend")]:
        with pytest.raises(FastdreamError, match=msg):
            DreamConfig(**kw).validate()


@pytest.fixture(scope="module")
def lite0():
    return load_backbone()


def test_masked_terms_change_only_their_region(lite0):
    # a deep class objective has receptive fields over the whole picture; restricted to a box, its
    # gradient is masked in picture space too, so the rest of the picture is left as it was
    x = picture(96, 128, seed=5)
    obj = ClassLogit(107).restrict(box=(0.0, 0.0, 0.5, 0.5)) + Layer("block4").restrict(box=(0.5, 0.5, 1.0, 1.0))
    out, _ = Dreamer(lite0, obj, DreamConfig(octaves=1, steps=3, jitter=4)).run(x)
    changed = (out - x).abs().sum(1)[0] > 0
    assert changed[:40, :56].all() and changed[56:, 72:].all()
    assert not changed[:40, 72:].any() and not changed[56:, :56].any()


def test_class_objective_is_spatial_and_maskable(lite0):
    x = picture(320, 320, seed=3)  # a 10x10 class map: cells whose receptive fields differ
    idx = lite0.class_index("jellyfish")
    d = Dreamer(lite0, ClassLogit(idx).restrict(box=(0.0, 0.0, 0.5, 0.5)), DreamConfig(octaves=1, steps=1, jitter=0))
    g, _ = d.gradient(x)
    g = g.abs().sum(1)[0]
    # receptive fields are wide, but the region it was asked for gets most of the change
    assert float(g[:160, :160].sum()) > 3 * float(g[160:, 160:].sum())
    with torch.no_grad():
        logits = lite0(x)
        cmap = lite0.forward_taps(x, ["class_map"])["class_map"]
    torch.testing.assert_close(cmap.mean((2, 3)), logits, rtol=1e-4, atol=1e-4)


def test_default_preset_doubles_the_objective_on_an_untuned_photo(lite0):
    from fastdream.api import dream_tensor, make_config
    from fastdream.objective_text import build_objective
    from fastdream.imageio import load_image
    from conftest import REPO

    # the presets were chosen by looking at other pictures (chelsea, astronaut), never this one
    x, _ = load_image(REPO / "examples" / "motorcycle.jpg")  # 480x324, as bundled
    cfg, layers = make_config(None)  # the default preset as it is
    obj = build_objective(lite0, tuple(x.shape[-2:]), layers=layers)
    out, _ = dream_tensor(x, obj, lite0, cfg)
    d = Dreamer(lite0, obj, cfg)
    assert d.evaluate(out) >= 2 * d.evaluate(x)
