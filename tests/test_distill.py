"""Distilled filters: generator shapes, dataset determinism/resume/shards, training resume, torchrun,
ONNX export checked by ONNX Runtime. Tiny pictures, tiny nets, few steps; the teacher in the dataset
tests is a stand-in (a fixed colour/contrast transform), the real one is exercised by `distill eval`."""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastdream.distill.dataset import CropRecipe, list_pairs, load_pair, render_dataset
from fastdream.distill.generator import DreamGenerator, DreamNet, DreamNetB, GeneratorConfig, build_generator
from fastdream.distill.checkpoint import read_checkpoint, save_checkpoint
from fastdream.distill.train import TrainConfig, train
from fastdream.errors import FastdreamError, InputError

REPO = pathlib.Path(__file__).resolve().parents[1]


def stand_in_teacher(x, index):
    """A deterministic 'dream': contrast up, colours rotated, a little per-index brightness."""
    y = (x - 0.5) * 1.6 + 0.5
    y = y[:, [1, 2, 0]] * 0.7 + y * 0.3 + 0.01 * (index % 3)
    return y.clamp(0, 1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8), "RGB").save(d / "a.png")
    Image.fromarray(rng.integers(0, 255, (37, 45), dtype=np.uint8), "L").save(d / "b_gray.png")
    Image.fromarray(rng.integers(0, 255, (33, 30, 4), dtype=np.uint8), "RGBA").save(d / "c_alpha.png")
    (d / "notes.txt").write_text("not a picture")
    return d


def render(photos, out, count=6, **kw):
    params = {"preset": "stand-in", "objective_spec": {"layers": ["block9"]}}
    return render_dataset(photos, out, count, stand_in_teacher, params, CropRecipe(size=24, seed=3), **kw)


@pytest.fixture(scope="module")
def pairs(photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs") / "data"
    render(photos, d, count=12)
    return d


# -- generator ------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", ["zeros", "replicate"])
@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (33, 50), (64, 64), (17, 8)])
def test_generator_shapes_odd_sizes(h, w, padding, gen):
    g = DreamGenerator(GeneratorConfig(width=4, blocks=1, padding=padding))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2, generator=gen)
        x = torch.rand(2, 3, h, w, generator=gen)
        y = g(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (33, 50), (17, 8), (65, 31)])
def test_dreamnet_shapes_odd_sizes(h, w, gen):
    g = DreamNet(GeneratorConfig(width=4, blocks=4, deep=8, mid_blocks=1))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2, generator=gen)
        x = torch.rand(2, 3, h, w, generator=gen)
        y = g(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().max()) > 1e-3


def test_dreamnet_starts_as_identity_and_sees_far(gen):
    x = torch.rand(1, 3, 37, 50, generator=gen)
    g = DreamNet(GeneratorConfig(width=4, blocks=4, deep=8, mid_blocks=1))
    with torch.no_grad():
        assert torch.equal(g(x), x)
    # receptive field: with dilations 1, 2, 4, 8 at 1/16 a change in one corner reaches the far corner
    # of a 256-pixel picture (the first filter's 1/8 layout does not)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3, generator=gen)
    a = torch.full((1, 3, 256, 256), 0.5)
    b = a.clone()
    b[..., :16, :16] = 1.0
    with torch.no_grad():
        far = (g(a) - g(b))[..., 200:, 200:].abs().max()
    assert float(far) > 0


def test_dreamnet_b_encodes_with_the_backbone_and_starts_as_identity(gen):
    from fastdream.backbones import load_backbone

    g = DreamNetB(GeneratorConfig(width=4, blocks=2, deep=8, mid_blocks=1), pretrained=True).train()
    assert g.config.arch == "fastdream-dreamnet-v3" and not g.encoder.training  # BatchNorm stays in eval
    assert not any(p.requires_grad for p in g.encoder.parameters())
    assert all(p.requires_grad for n, p in g.named_parameters() if not n.startswith("encoder."))
    x = torch.rand(2, 3, 64, 96, generator=gen)
    with torch.no_grad():
        assert torch.equal(g(x), x)  # the output layer starts at zero
        for odd in [(37, 50), (1, 1), (17, 129)]:
            y = torch.rand(1, 3, *odd, generator=gen)
            assert g(y).shape == y.shape
        # the encoder is the backbone: its block9 on the same picture
        bb = load_backbone()
        want = bb.forward_taps(x, ["block9"])["block9"]
        h = g.encoder._stem_act(g.encoder._bn0(g.encoder._conv_stem((x - g.mean) / g.std)))
        for block in g.encoder._blocks:
            h = block(h)
    assert torch.allclose(h, want, atol=1e-4)
    g.train_encoder(True)
    assert all(p.requires_grad for p in g.encoder.parameters()) and not g.encoder.training


def test_dreamnet_b_coarse_pass_reads_the_half_size_picture(gen):
    from fastdream.backbones import load_backbone

    cfg = GeneratorConfig(width=4, blocks=2, deep=8, mid_blocks=1, version=3)
    g = DreamNetB(dataclasses.replace(cfg, coarse=True), pretrained=True).eval()
    assert DreamNetB(cfg).lift4_coarse is None
    x = torch.rand(1, 3, 64, 96, generator=gen)
    seen = []
    g.lift4_coarse.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        assert torch.equal(g(x), x)  # still the identity at the start
        want = load_backbone().forward_taps(F.avg_pool2d(x, 2), ["block9"])["block9"]
    assert seen[0].shape == (1, 112, 2, 3) and torch.allclose(seen[0], want, atol=1e-4)
    # the coarse features reach the output once the output layer is no longer zero
    with torch.no_grad():
        g.out.weight.normal_(0, 0.3, generator=gen)
        a = g(x)
        g.lift4_coarse.weight.zero_()
        g.lift4_coarse.bias.zero_()
        assert float((g(x) - a).abs().max()) > 1e-4
    with pytest.raises(FastdreamError, match="coarse"):
        GeneratorConfig(version=2, coarse=True).validate()


def test_generator_version_follows_the_class():
    assert DreamGenerator(GeneratorConfig(width=4, blocks=1)).config.arch == "fastdream-dreamnet-v1"
    assert DreamNet(GeneratorConfig(width=4, blocks=1, deep=8)).config.arch == "fastdream-dreamnet-v2"
    assert isinstance(build_generator(GeneratorConfig(width=4, blocks=1, version=1)), DreamGenerator)


def test_generator_starts_as_identity(gen):
    x = torch.rand(1, 3, 21, 30, generator=gen)
    with torch.no_grad():
        assert torch.equal(DreamGenerator(GeneratorConfig(width=4, blocks=1))(x), x)


def test_generator_config_validated():
    with pytest.raises(FastdreamError):
        DreamGenerator(GeneratorConfig(width=2))
    with pytest.raises(FastdreamError, match="padding"):
        DreamGenerator(GeneratorConfig(width=4, padding="reflect"))


def test_replicate_padding_hides_the_border(gen):
    """With edge padding a constant picture gives a constant output (no border can be told apart);
    with zero padding the same weights change the border pixels differently from the middle."""
    outs = {}
    for padding in ("replicate", "zeros"):
        g = DreamGenerator(GeneratorConfig(width=4, blocks=2, padding=padding))
        torch.manual_seed(3)
        with torch.no_grad():
            for p in g.parameters():
                p.normal_(0, 0.2)
            outs[padding] = g(torch.full((1, 3, 40, 56), 0.4))
    r, z = outs["replicate"], outs["zeros"]
    assert float((r - r[..., 20:21, 28:29]).abs().max()) < 1e-5
    assert float((r - 0.4).abs().max()) > 1e-3  # it does change the picture
    assert float((z - z[..., 20:21, 28:29]).abs().max()) > 1e-3


# -- dataset --------------------------------------------------------------------------------------

def _bytes(folder):
    return {i: p.read_bytes() for i, p in list_pairs(folder).items()}


def test_dataset_deterministic_and_teacher_saved(photos, pairs, tmp_path):
    render(photos, tmp_path / "again", count=12)
    assert _bytes(pairs) == _bytes(tmp_path / "again")
    meta = json.loads((pairs / "teacher.json").read_text())
    assert meta["teacher"]["preset"] == "stand-in" and meta["crop"]["size"] == 24
    assert [p["name"] for p in meta["photos"]] == ["a.png", "b_gray.png", "c_alpha.png"]
    x, y = load_pair(list_pairs(pairs)[0])
    assert x.shape == y.shape == (3, 24, 24)
    want = stand_in_teacher(x[None].float() / 255, 0).mul(255).round().to(torch.uint8)[0]
    assert torch.equal(y, want)


def test_dataset_resume(photos, pairs, tmp_path):
    d = tmp_path / "data"
    render(photos, d, count=12)
    for i in (3, 7):
        (d / f"pair_{i:06d}.png").unlink()
    with pytest.raises(InputError, match="--resume"):
        render(photos, d, count=12)
    res = render(photos, d, count=12, resume=True)
    assert res["rendered"] == 2 and res["skipped"] == 10
    assert _bytes(d) == _bytes(pairs)
    assert not [f for f in d.iterdir() if f.name.startswith(".")]  # no temporary files left


def test_dataset_resume_refuses_other_settings(photos, pairs, tmp_path):
    d = tmp_path / "data"
    render(photos, d, count=2)
    with pytest.raises(InputError, match="other teacher"):
        render_dataset(photos, d, 2, stand_in_teacher, {"preset": "other"}, CropRecipe(size=24, seed=3), resume=True)


def test_dataset_shards_disjoint_and_complete(photos, pairs, tmp_path):
    parts = []
    for k in range(3):
        d = tmp_path / f"shard{k}"
        render(photos, d, count=12, shard=f"{k}/3")
        parts.append(_bytes(d))
    keys = [set(p) for p in parts]
    assert all(not (keys[a] & keys[b]) for a in range(3) for b in range(a + 1, 3))
    union = {i: b for p in parts for i, b in p.items()}
    assert union == _bytes(pairs)
    assert all(i % 3 == k for k, p in enumerate(parts) for i in p)


def test_dataset_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no pictures"):
        render(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FastdreamError, match="shard"):
        render(REPO / "examples", tmp_path / "out", shard="3/3")
    assert not (tmp_path / "out").exists()


# -- training -------------------------------------------------------------------------------------

TINY = dict(steps=4, batch=2, crop=16, loss_margin=0, width=4, blocks=1, deep=8, mid_blocks=1,
            feature_weight=0.0, style_weight=0.0, temporal_weight=0.0,
            objective_weight=0.0, pixel_weight=1.0, eval_every=2, save_every=1,
            val_every=4, seed=5)


def _weights(path):
    return read_checkpoint(path)["model"]


def test_train_resume_continues_identically(pairs, tmp_path):
    full = tmp_path / "full.pt"
    train(pairs, full, TrainConfig(**TINY))

    class Stop(Exception):
        pass

    def stop_at_2(done, total):
        if done == 2:
            raise Stop

    part = tmp_path / "part.pt"
    with pytest.raises(Stop):
        train(pairs, part, TrainConfig(**TINY), progress=stop_at_2)
    assert read_checkpoint(part)["step"] == 2
    res = train(pairs, part, TrainConfig(**TINY), resume=True)
    assert res["start_step"] == 2
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for k in a:  # same batches, same optimizer state, same learning rates: the same numbers
        assert torch.equal(a[k], b[k]), k



def test_train_init_fine_tunes_a_shipped_filter(pairs, tmp_path):
    """--init: the layout and weights of an exported filter (here the shipped `fast`) are where training starts."""
    pytest.importorskip("onnxruntime")
    from fastdream.distill.export import generator_from_onnx

    out = tmp_path / "ft.pt"
    res = train(pairs, out, TrainConfig(**{**TINY, "steps": 1, "lr": 1e-12, "init": "fast"}))
    ck = read_checkpoint(out)
    assert (ck["generator"]["version"], ck["generator"]["width"], ck["generator"]["deep"]) == (3, 16, 128)
    assert ck["train_config"]["init"] == "fast" and res["steps"] == 1
    want = generator_from_onnx("fast")[0].state_dict()
    got = ck["model"]
    assert got.keys() == want.keys()
    assert max(float((got[k].float() - want[k].float()).abs().max()) for k in got) < 1e-6
    # the same command line resumes: the layout from the filter, the weights from the checkpoint
    res = train(pairs, out, TrainConfig(**{**TINY, "steps": 2, "init": "fast"}), resume=True)
    assert res["start_step"] == 1 and read_checkpoint(out)["step"] == 2
    # a v2 filter (the shipped textures) too
    train(pairs, tmp_path / "t.pt", TrainConfig(**{**TINY, "steps": 1, "lr": 1e-12, "init": "textures"}))
    assert read_checkpoint(tmp_path / "t.pt")["generator"]["version"] == 2
    with pytest.raises(InputError, match="8-bit filter"):
        train(pairs, tmp_path / "q.pt", TrainConfig(**{**TINY, "steps": 1, "init": "fast-int8"}))
    assert not (tmp_path / "q.pt").exists()

def test_train_with_feature_and_temporal_loss(pairs, tmp_path):
    res = train(pairs, tmp_path / "f.pt", TrainConfig(**{**TINY, "steps": 1, "crop": 16, "feature_weight": 0.1,
                                                         "feature_layers": ["block2"], "feature_norm": "unit",
                                                         "temporal_weight": 0.5,
                                                         "style_weight": 1.0, "style_layers": ["block1"],
                                                         "objective_weight": 0.5,
                                                         "temporal_shift": 4}))
    assert set(res["last_losses"]) >= {"pixel", "feature", "style", "objective", "temporal"}
    assert res["val_pairs"] == 3 and np.isfinite(res["val_psnr_db"])


def test_train_with_unpaired_photos(pairs, photos, tmp_path):
    cfg = TrainConfig(**{**TINY, "steps": 2, "objective_weight": 1.0, "photos": str(photos), "unpaired": 2})
    res = train(pairs, tmp_path / "u.pt", cfg)
    assert res["unpaired_photos"] == 3 and res["teacher_gain"] > 0
    assert "unpaired" in res["last_losses"] and np.isfinite(res["last_losses"]["unpaired"])


@pytest.mark.parametrize("bad,msg", [({"unpaired": 2}, "--photos"),
                                     ({"unpaired": 2, "photos": "p", "objective_weight": 0.0}, "objective"),
                                     ({"unpaired": -1}, "unpaired"), ({"objective_target": 0.0}, "target"),
                                     ({"padding": "mirror"}, "padding")])
def test_train_config_validated(bad, msg):
    with pytest.raises(FastdreamError, match=msg):
        TrainConfig(**{**TINY, **bad}).validate()


def test_photo_set_crops(photos):
    from fastdream.distill.data import PhotoSet

    ps = PhotoSet(photos, 24)
    a, b = ps.batch(3, 0, 5, 0), ps.batch(3, 0, 5, 0)
    assert a.shape == (5, 3, 24, 24) and torch.equal(a, b)  # a function of (seed, step, rank)
    assert not torch.equal(a, ps.batch(3, 1, 5, 0)) and not torch.equal(a, ps.batch(4, 0, 5, 0))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    with pytest.raises(InputError, match="smaller than the 64-pixel"):
        PhotoSet(photos, 64)


def test_pair_windows_aligned_to_the_grid(pairs):
    """``PairSet.batch(align=N)``: every window starts at multiples of N pixels of its pair and is not
    mirrored (so it keeps the pair's pixel grid); align 1 mirrors some windows and starts anywhere."""
    from fastdream.distill.data import PairSet

    ps = PairSet(pairs)

    def placements(x, y):
        """(offset y, offset x, mirrored) of every pair window matching the batch's ``x``, ``y``."""
        x8, y8 = (x * 255).round().to(torch.uint8), (y * 255).round().to(torch.uint8)
        c = x8.shape[-1]
        out = []
        for px, py in zip(ps.train_x, ps.train_y):
            for oy in range(px.shape[-2] - c + 1):
                for ox in range(px.shape[-1] - c + 1):
                    for flip in (False, True):
                        wx, wy = px[:, oy:oy + c, ox:ox + c], py[:, oy:oy + c, ox:ox + c]
                        if flip:
                            wx, wy = wx.flip(-1), wy.flip(-1)
                        if torch.equal(wx, x8) and torch.equal(wy, y8):
                            out.append((oy, ox, flip))
        return out

    seen = set()
    for step in range(4):
        xs, ys = ps.batch(step, 0, 4, 8, 0, align=8)
        for x, y in zip(xs, ys):
            found = placements(x, y)
            assert found and any(oy % 8 == 0 and ox % 8 == 0 and not f for oy, ox, f in found)
            seen.update((oy, ox) for oy, ox, f in found if not f)
    assert len(seen) > 1  # still drawn at random among the aligned places
    free = [placements(x, y) for step in range(4) for x, y in zip(*ps.batch(step, 0, 4, 8, 0))]
    assert all(free) and any(all(f for _, _, f in p) for p in free)  # some mirrored
    assert any(all(oy % 8 or ox % 8 for oy, ox, _ in p) for p in free)  # some off the grid
    with pytest.raises(FastdreamError, match="crop_align"):
        TrainConfig(**{**TINY, "crop_align": 0}).validate()


def test_recolour_rotates_hue_about_the_gray_axis():
    from fastdream.distill.data import _recolour

    rng = np.random.default_rng(0)
    c = torch.rand(3, 8, 8)
    y = _recolour(c.clone(), rng)
    assert y.shape == c.shape and not torch.allclose(y, c)
    gray = torch.full((3, 4, 4), 0.5)
    g = _recolour(gray.clone(), np.random.default_rng(1))  # a gray picture is tinted, not left gray
    assert float((g - g.mean(0, keepdim=True)).abs().max()) > 1e-3


def test_feature_loss_sees_the_crop_mirrored_outwards(gen):
    """The backbone terms see each crop mirrored outwards by `margin` pixels: the same numbers as the
    terms without a margin on the mirrored pictures, and different from the terms on the bare crop."""
    import torch.nn.functional as F

    from fastdream.api import get_backbone
    from fastdream.distill.losses import FeatureLoss
    from fastdream.engine.objectives import Layer

    bb = get_backbone(None, "cpu")
    fl = FeatureLoss(bb, ["block2"], Layer("block5"), margin=8, style_layers=["block2"])
    bare = FeatureLoss(bb, ["block2"], Layer("block5"), margin=0, style_layers=["block2"])
    y = torch.rand(2, 3, 48, 48, generator=gen)
    o = torch.rand(2, 3, 48, 48, generator=gen)
    mirror = lambda t: F.pad(t, (8, 8, 8, 8), mode="reflect")  # noqa: E731
    with torch.no_grad():
        a, b, c = fl(o, y), bare(mirror(o), mirror(y)), bare(o, y)
    for k in ("feature", "style", "objective"):
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5, abs=1e-7), k
    assert float(c["feature"]) != pytest.approx(float(a["feature"]), rel=1e-4)
    assert fl.pad(torch.rand(1, 3, 5, 7)).shape == (1, 3, 13, 15)  # tiny crops: at most size - 1
    # the climb term: zero once the output's objective is `gain` times the input's, positive below
    with torch.no_grad():
        assert float(fl.climb(y, y, 0.5)) == 0.0
        assert float(fl.climb(y, y, 2.0)) == pytest.approx(0.5, abs=1e-5)  # halfway: 1 - 1/2


def test_feature_loss_unit_norm_is_the_judges_lpips_style_distance(gen):
    """feature_norm="unit": the LPIPS-style distance per layer (each position's channel vector
    unit-normalized), summed; blind to each position's scale, which the energy form is not."""
    from fastdream.api import get_backbone
    from fastdream.distill.losses import FeatureLoss
    from fastdream.metrics import unit_feature_distance

    a, b = torch.randn(2, 5, 7, 9, generator=gen), torch.randn(2, 5, 7, 9, generator=gen)
    na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    want = ((na - nb) ** 2).sum(1).mean()  # the reference, written out
    assert float(unit_feature_distance(a, b)) == pytest.approx(float(want), rel=1e-6)
    scale = torch.rand(2, 1, 7, 9, generator=gen) * 10 + 0.1  # a positive factor per position
    assert float(unit_feature_distance(a * scale, b)) == pytest.approx(float(want), rel=1e-5)
    assert float(unit_feature_distance(a, -a)) == pytest.approx(4.0, rel=1e-6)

    bb = get_backbone(None, "cpu")
    unit = FeatureLoss(bb, ["block2", "block5"], margin=0, feature_norm="unit")
    energy = FeatureLoss(bb, ["block2", "block5"], margin=0)
    y = torch.rand(2, 3, 48, 48, generator=gen)
    o = torch.rand(2, 3, 48, 48, generator=gen)
    with torch.no_grad():
        fo, fy = bb.forward_taps(o, ["block2", "block5"]), bb.forward_taps(y, ["block2", "block5"])
        want = sum(unit_feature_distance(fo[k], fy[k]) for k in ("block2", "block5"))
        assert float(unit(o, y)["feature"]) == pytest.approx(float(want), rel=1e-5)
        assert float(energy(o, y)["feature"]) != pytest.approx(float(want), rel=1e-2)
    with pytest.raises(ValueError, match="feature_norm"):
        FeatureLoss(bb, ["block2"], feature_norm="lpips")
    with pytest.raises(FastdreamError, match="feature norm"):
        TrainConfig(**{**TINY, "feature_norm": "lpips"}).validate()


def test_objective_per_patch_rules_out_a_few_blobs(gen):
    """Per patch (and channel), the objective term asks every part to climb: an output that reaches the target on
    average only through one patch is penalized; the same output scores 0 with a whole-crop hinge."""
    from fastdream.distill.losses import _shortfall

    vt = torch.ones(1, 4)
    vo = torch.tensor([[4.0, 0.0, 0.0, 0.0]])  # the mean equals the teacher's
    assert float(_shortfall(vo.mean(1, keepdim=True), vt.mean(1, keepdim=True), 1.0)) == 0.0
    assert float(_shortfall(vo, vt, 1.0)) == pytest.approx(0.75)
    # parts weigh by the teacher's value there: a nearly empty patch (black sky) hardly counts
    assert float(_shortfall(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.01, 1.0]]), 1.0)) == pytest.approx(0.01 / 1.01)
    assert float(_shortfall(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.01, 1.0]]), 1.0)) == pytest.approx(1 / 1.01)

    from fastdream.api import get_backbone
    from fastdream.distill.losses import FeatureLoss
    from fastdream.engine.objectives import Context, Layer

    bb = get_backbone(None, "cpu")
    obj = Layer("block9") + 0.5 * Layer("block5")
    x = torch.rand(2, 3, 64, 96, generator=gen)
    acts = bb.forward_taps(x, sorted(obj.taps()))
    ctx = Context((64, 96))
    with torch.no_grad():
        per = FeatureLoss(bb, [], obj, patch=32).patch_values(acts, ctx)
        whole = FeatureLoss(bb, [], obj, patch=0).patch_values(acts, ctx)
        chan = FeatureLoss(bb, [], Layer("block9"), patch=0, channels=True).patch_values(acts, ctx)
        both = FeatureLoss(bb, [], Layer("block9"), patch=32, channels=True).patch_values(acts, ctx)
    assert per.shape == (2, 6) and whole.shape == (2, 1)
    torch.testing.assert_close(whole[:, 0], obj(acts, ctx))
    c9 = acts["block9"].shape[1]
    assert chan.shape == (2, c9) and both.shape == (2, c9 * 6)
    torch.testing.assert_close(chan.sum(1), Layer("block9")(acts, ctx))  # the channels add up to the layer's value
    torch.testing.assert_close(per.mean(1), whole[:, 0])  # equal patches: their mean is the whole


def test_train_resumes_a_checkpoint_saved_before_a_generator_field_existed(pairs, tmp_path):
    out = tmp_path / "old.pt"
    train(pairs, out, TrainConfig(**{**TINY, "steps": 4, "until": 2}))
    ck = torch.load(out, weights_only=False)
    gen_cfg = json.loads(ck["generator"])
    del gen_cfg["coarse"]  # as written before the coarse pass existed
    ck["generator"] = json.dumps(gen_cfg)
    torch.save(ck, out)
    res = train(pairs, out, TrainConfig(**{**TINY, "steps": 4}), resume=True)
    assert res["start_step"] == 2 and res["end_step"] == 4


def test_train_refuses_existing_and_foreign_checkpoints(pairs, tmp_path):
    out = tmp_path / "x.pt"
    train(pairs, out, TrainConfig(**{**TINY, "steps": 1}))
    with pytest.raises(InputError, match="--resume"):
        train(pairs, out, TrainConfig(**TINY))
    with pytest.raises(InputError, match="generator"):
        train(pairs, out, TrainConfig(**{**TINY, "width": 8}), resume=True)
    other = tmp_path / "other.pt"
    torch.save({"format": "fastdream-distill-checkpoint-v1", "arch": "unet-v9", "model": {}}, other)
    with pytest.raises(InputError, match="architecture"):
        read_checkpoint(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a fastdream filter checkpoint"):
        read_checkpoint(junk)


def test_torchrun_two_processes_gloo(pairs, tmp_path):
    out, rep = tmp_path / "ddp.pt", tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "fastdream.cli.main", "distill", "train", str(pairs), "-o", str(out), "--steps", "2", "--batch", "1",
           "--crop", "16", "--loss-margin", "0", "--width", "4", "--blocks", "1", "--feature-weight", "0", "--threads", "1",
           "--val-every", "4", "--report", str(rep)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(rep.read_text())
    assert report["world_size"] == 2 and report["rank"] == 0 and report["steps"] == 2
    assert read_checkpoint(out)["step"] == 2


# -- export ---------------------------------------------------------------------------------------

def _random_checkpoint(path, gen, padding="zeros", version=1):
    g = build_generator(GeneratorConfig(width=4, blocks=2, padding=padding, version=version, deep=8, mid_blocks=1))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.3, generator=gen)
    opt = torch.optim.Adam(g.parameters())
    save_checkpoint(path, g, opt, 7, TrainConfig(width=4, blocks=2, padding=padding), {"preset": "classic"},
                    [{"step": 7, "val_psnr_db": 21.5}])
    return g.eval()


@pytest.mark.parametrize("padding,version", [("zeros", 1), ("replicate", 1), ("zeros", 2), ("replicate", 2)])
def test_export_runs_in_onnxruntime_at_another_size(tmp_path, gen, padding, version):
    pytest.importorskip("onnxruntime")  # a missing package skips; an export error fails
    import onnx
    import onnxruntime as ort

    from fastdream.distill.export import check_against_torch, export_onnx

    g = _random_checkpoint(tmp_path / "g.pt", gen, padding, version)
    res = export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx", example_size=(32, 48))
    assert res["max_abs_error"] <= 1e-4
    onnx.checker.check_model(onnx.load(tmp_path / "g.onnx"))
    # another size, another batch, independently of the exporter's own check
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    for (n, h, w) in [(1, 41, 67), (3, 9, 130), (1, 1, 1)]:
        x = torch.rand(n, 3, h, w, generator=gen)
        got = sess.run(["dream"], {"image": x.numpy()})[0]
        with torch.no_grad():
            want = g(x).numpy()
        assert got.shape == (n, 3, h, w)
        assert np.abs(got - want).max() <= 1e-4  # see ORT_TOLERANCE in fastdream.distill.export
        assert np.abs(want - x.numpy()).max() > 1e-2  # a random net really changes the picture
    err, _ = check_against_torch(tmp_path / "g.onnx", g, (23, 31))
    assert err <= 1e-4


@pytest.mark.parametrize("coarse", [False, True])
def test_export_v3_folds_the_same_padding_and_runs_at_any_size_through_the_runtime(tmp_path, gen, coarse):
    pytest.importorskip("onnxruntime")
    import onnx

    from fastdream.distill.export import export_onnx
    from fastdream.distill.runtime import load_filter

    g = build_generator(GeneratorConfig(width=4, blocks=2, deep=8, mid_blocks=1, version=3, coarse=coarse),
                        pretrained=True)
    with torch.no_grad():
        for n, p in g.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.3, generator=gen)
    save_checkpoint(tmp_path / "g.pt", g, torch.optim.Adam(g.parameters()), 3,
                    TrainConfig(width=4, blocks=2, version=3, coarse=coarse), {"preset": "classic"}, [])
    res = export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx", example_size=(32, 48))
    assert res["max_abs_error"] <= 1e-4
    m = onnx.load(tmp_path / "g.onnx")
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["fastdream.pad_multiple"] == ("32" if coarse else "16")
    assert json.loads(meta["fastdream.arch"])["name"] == "fastdream-dreamnet-v3"
    # the backbone's asymmetric "SAME" pads went into the convolutions (no Pad copies the input); the only
    # Pads left are the half-size output stage's edge padding of its 8-channel map and of its border rows
    assert all(n.name.startswith("/tail/") for n in m.graph.node if n.op_type == "Pad")
    assert "DepthToSpace" in [n.op_type for n in m.graph.node]
    runner = load_filter(tmp_path / "g.onnx", device="cpu")
    g.eval()
    for (n, h, w) in [(1, 41, 67), (2, 80, 48), (1, 5, 3)]:
        x = torch.rand(n, 3, h, w, generator=gen)
        got = runner(x)
        with torch.no_grad():
            want = g(x)
        assert got.shape == (n, 3, h, w)
        assert float((got - want).abs().max()) <= 1e-4
        assert float((want - x).abs().max()) > 1e-2



@pytest.mark.parametrize("padding,coarse", [("zeros", False), ("zeros", True), ("replicate", False)])
def test_half_size_output_stage_is_the_full_size_one(gen, padding, coarse):
    """The exported output stage (pixel-shuffled half-size convolutions, the border put back) against the
    trained one (resize to full size, 3x3 convolution beside the picture), border pixels included."""
    from fastdream.distill.generator import HalfSizeOutput

    g = build_generator(GeneratorConfig(width=4, blocks=1, deep=8, mid_blocks=1, version=3, coarse=coarse,
                                        padding=padding)).eval()
    with torch.no_grad():
        for n, p in g.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.3, generator=gen)
    for (n, h, w) in [(2, 64, 96), (1, 37, 50), (1, 32, 32)]:
        x = torch.rand(n, 3, h, w, generator=gen)
        with torch.no_grad():
            want = g(x)
            got = g.half_size_output()(x)
        assert isinstance(g.tail, HalfSizeOutput)
        g.tail = None
        assert float((want - x).abs().mean()) > 0.05          # the stage really changes the picture
        err = (got - want).abs()
        assert float(err.max()) < 1e-5, (n, h, w)
        assert float(err[..., 0, :].max()) < 1e-5 and float(err[..., :, -1].max()) < 1e-5  # the border too
    g.half_size_output()
    g.train()
    assert g.tail is None  # built from the weights of the moment: training drops it


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_phases_output_stage_grows_from_the_resize_stage(gen, padding):
    """output="phases": 12 free channels at half size, pixel-shuffled. Grown from a trained resize stage
    (load_generator) it draws the same picture inside the one-pixel border; its phases are then free to
    differ between neighbouring pixels, which the resize stage's cannot beyond a fixed filter of x."""
    cfg = dict(width=4, blocks=1, deep=8, mid_blocks=1, version=3, padding=padding)
    a = build_generator(GeneratorConfig(**cfg)).eval()
    with torch.no_grad():
        for n, p in a.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.3, generator=gen)
    b = build_generator(GeneratorConfig(**cfg, output="phases")).eval()
    x0 = torch.rand(1, 3, 48, 64, generator=gen)
    with torch.no_grad():
        assert torch.equal(b(x0), x0)  # untrained: the identity
    b.load_generator(a)
    assert b.out is None and b.half_size_output().tail is None  # already at half size: nothing to swap in
    for n, h, w in [(2, 64, 96), (1, 37, 50)]:
        x = torch.rand(n, 3, h, w, generator=gen)
        with torch.no_grad():
            want, got = a(x), b(x)
        assert float((want - x).abs().mean()) > 0.05
        assert float((got - want)[..., 1:-1, 1:-1].abs().max()) < 1e-5
        if padding == "replicate":  # edge padding at both sizes: the border agrees too
            assert float((got - want).abs().max()) < 1e-5
    # one phase changed alone moves every 2x2 block's pixel of that phase, not its neighbours
    c = build_generator(GeneratorConfig(**cfg, output="phases")).eval()  # the identity, far from the clamp
    x = torch.full((1, 3, 32, 32), 0.5)
    with torch.no_grad():
        c.out_phases.bias[0] += 0.1  # colour 0, phase (0, 0)
        moved = (c(x) - x)[0, 0]
    assert torch.allclose(moved[0::2, 0::2], torch.full((16, 16), 0.1), atol=1e-5)
    assert float(moved[1::2].abs().max()) == 0 and float(moved[:, 1::2].abs().max()) == 0
    with pytest.raises(ValueError, match="cannot become"):
        a.load_generator(b)
    with pytest.raises(FastdreamError, match="output stage must be one of resize, phases"):
        GeneratorConfig(**{**cfg, "output": "shuffle"}).validate()
    with pytest.raises(FastdreamError, match="phases output stage is for the v3"):
        GeneratorConfig(width=4, blocks=1, deep=8, version=2, output="phases").validate()


def test_fine_blocks_grow_as_the_identity_and_export(gen, tmp_path):
    """fine_blocks: residual blocks after the decoder's 1/4 and 1/2 stages. A filter grown with them draws
    the same picture until they learn; refusals for shrinking and for other generators; through ONNX."""
    pytest.importorskip("onnxruntime")
    from fastdream.distill.export import export_onnx
    from fastdream.distill.runtime import FilterRunner

    cfg = dict(width=4, blocks=1, deep=8, mid_blocks=1, version=3)
    a = build_generator(GeneratorConfig(**cfg)).eval()
    with torch.no_grad():
        for n, p in a.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.3, generator=gen)
    b = build_generator(GeneratorConfig(**cfg, fine_blocks=2)).eval().load_generator(a)
    assert len(b.fine2) == len(b.fine1) == 2 and b.fine2[0].conv1.pointwise.in_channels == 8
    x = torch.rand(1, 3, 64, 96, generator=gen)
    with torch.no_grad():
        assert float((b(x) - a(x)).abs().max()) < 1e-6  # grown: the same filter
        for n, p in b.named_parameters():
            if n.startswith(("fine1.", "fine2.")):
                p.normal_(0, 0.3, generator=gen)
        changed, before = b(x), a(x)
    assert float((changed - before).abs().mean()) > 1e-3  # and the blocks can change it
    with pytest.raises(ValueError, match="cannot become"):
        a.load_generator(b)
    with pytest.raises(FastdreamError, match="fine blocks are for the v3"):
        GeneratorConfig(width=4, blocks=1, deep=8, version=2, fine_blocks=1).validate()
    with pytest.raises(FastdreamError, match="fine blocks must be a whole number in 0..8"):
        GeneratorConfig(**cfg, fine_blocks=9).validate()
    save_checkpoint(tmp_path / "f.pt", b, None, 1, TrainConfig(**cfg, fine_blocks=2), {"preset": "classic"}, [])
    export_onnx(tmp_path / "f.pt", tmp_path / "f.onnx")
    got = FilterRunner(tmp_path / "f.onnx").run_numpy(x.numpy())
    assert float(np.abs(got - changed.numpy()).max()) < 1e-4


def _grows_keeps_and_exports(gen, tmp_path, cfg, without: dict, path: str, grown: str):
    """A generator with the path ``path`` (a GeneratorConfig flag) grown from one ``without`` it (random
    weights): the same pictures until its ``grown`` layer (zero at first) learns, then others; the path
    cannot be dropped; the file exported from it runs in ONNX Runtime with the same pictures and says it
    has the path. Returns the grown generator."""
    from fastdream.distill.export import export_onnx, generator_from_onnx
    from fastdream.distill.runtime import FilterRunner

    tmp_path.mkdir(parents=True, exist_ok=True)
    b = build_generator(GeneratorConfig(**cfg, **without, **{path: True}), pretrained=True).eval()
    a = build_generator(GeneratorConfig(**cfg, **without), pretrained=True).eval()
    with torch.no_grad():
        for n, p in a.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.3, generator=gen)
    b.load_generator(a)
    x = torch.rand(1, 3, 64, 96, generator=gen)
    with torch.no_grad():
        assert float((b(x) - a(x)).abs().max()) < 1e-6  # grown: the same filter
        getattr(b, grown).weight.normal_(0, 0.3, generator=gen)
        changed, before = b(x), a(x)
    assert float((changed - before).abs().mean()) > 1e-3
    with pytest.raises(ValueError, match=f"{path.replace('_', ' ')} cannot lose it"):
        a.load_generator(b)
    save_checkpoint(tmp_path / "g.pt", b, None, 1, TrainConfig(**cfg, **without, **{path: True}),
                    {"preset": "classic"}, [])
    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx")
    got = FilterRunner(tmp_path / "g.onnx").run_numpy(x.numpy())
    assert float(np.abs(got - changed.numpy()).max()) < 1e-4
    again, _ = generator_from_onnx(tmp_path / "g.onnx")  # the file says it has the path
    assert getattr(again.config, path) and all(getattr(again.config, k) == v for k, v in without.items())
    return b


def test_stem_path_is_the_stems_vjp_grows_and_exports(gen, tmp_path):
    """stem_path: a map at the stem's output carried back to the pixels by the stem's vector-Jacobian
    product at the picture. It equals autograd's gradient of <stem(x), g> (odd sizes too), a filter grown
    with it draws the same picture until it learns, it cannot be dropped, and ONNX Runtime runs it."""
    pytest.importorskip("onnxruntime")
    from fastdream.backbones.efficientnet_lite import conv_bn

    cfg = dict(width=4, blocks=1, deep=8, mid_blocks=1, version=3)
    b = build_generator(GeneratorConfig(**cfg, stem_path=True), pretrained=True).eval()
    enc = b.encoder
    for h, w in [(64, 96), (47, 61)]:
        x = torch.rand(2, 3, h, w, generator=gen, requires_grad=True)
        stem = enc._stem_act(conv_bn(enc._conv_stem, enc._bn0, (x - b.mean) / b.std))
        g = torch.randn(stem.shape, generator=gen)
        (want,) = torch.autograd.grad(stem, x, g)
        got = b.stem_vjp(g, stem.detach(), x.detach()) / b.STEM_SCALE
        assert got.shape == want.shape
        assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
    _grows_keeps_and_exports(gen, tmp_path, cfg, {}, "stem_path", "to_stem")
    with pytest.raises(FastdreamError, match="stem path is for the v3"):
        GeneratorConfig(width=4, blocks=1, deep=8, version=2, stem_path=True).validate()


def test_block0_path_is_block0s_vjp_grows_and_exports(gen, tmp_path):
    """block0_path: a map at block0's output carried back through block0 (the projection, the depthwise
    3x3's ReLU6 gate, the depthwise 3x3) to the stem's output, then to the pixels like the stem path. It
    equals autograd's gradient of <block0(stem), g> (odd sizes too), grows from a filter without it
    (with or without the stem path beside it), cannot be dropped, and ONNX Runtime runs it."""
    pytest.importorskip("onnxruntime")

    cfg = dict(width=4, blocks=1, deep=8, mid_blocks=1, version=3)
    b = build_generator(GeneratorConfig(**cfg, stem_path=True, block0_path=True), pretrained=True).eval()
    blk = b.encoder._blocks[0]
    for h, w in [(32, 48), (23, 31)]:
        stem = (torch.rand(2, 32, h, w, generator=gen) * 8 - 1).requires_grad_(True)
        out = blk(stem)
        g = torch.randn(out.shape, generator=gen)
        (want,) = torch.autograd.grad(out, stem, g)
        got = b.block0_vjp(g, blk.depthwise(stem.detach()))
        assert got.shape == want.shape
        assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())
    _grows_keeps_and_exports(gen, tmp_path / "with", cfg, {"stem_path": True}, "block0_path", "to_block0")
    # alone, without the stem path's own map
    c = _grows_keeps_and_exports(gen, tmp_path / "alone", cfg, {}, "block0_path", "to_block0")
    assert c.to_stem is None
    with pytest.raises(FastdreamError, match="block0 path is for the v3"):
        GeneratorConfig(width=4, blocks=1, deep=8, version=2, block0_path=True).validate()


def test_phases_filter_exports_re_exports_and_grows_by_init(pairs, tmp_path, gen):
    """A phases filter through ONNX Runtime (the same pictures as torch), rebuilt from its file by
    `fastdream export`, and `--init FILTER --output-stage phases` growing a resize filter's stage."""
    pytest.importorskip("onnxruntime")
    from fastdream.distill.export import export_onnx, generator_from_onnx
    from fastdream.distill.runtime import FilterRunner

    v3 = dict(TINY, version=3, width=4, deep=8, blocks=1, mid_blocks=1, steps=1, lr=1e-12)
    train(pairs, tmp_path / "r.pt", TrainConfig(**v3))
    ck = read_checkpoint(tmp_path / "r.pt")
    g = build_generator(GeneratorConfig(**ck["generator"]), pretrained=True)
    g.load_state_dict(ck["model"])
    with torch.no_grad():
        for n, p in g.named_parameters():
            if not n.startswith("encoder."):
                p.normal_(0, 0.2, generator=gen)
    save_checkpoint(tmp_path / "r.pt", g, None, 1, TrainConfig(**v3), {"preset": "classic"}, [])
    export_onnx(tmp_path / "r.pt", tmp_path / "r.onnx")
    # grow: the layout from the file, the stage from the command line
    out = tmp_path / "p.pt"
    train(pairs, out, TrainConfig(**{**v3, "init": str(tmp_path / "r.onnx"), "output": "phases"}))
    ck = read_checkpoint(out)
    assert ck["generator"]["output"] == "phases" and "out_phases.weight" in ck["model"] and "out.weight" not in ck["model"]
    export_onnx(out, tmp_path / "p.onnx")
    p = build_generator(GeneratorConfig(**ck["generator"]), pretrained=True).eval()
    p.load_state_dict(ck["model"])
    x = torch.rand(1, 3, 64, 96, generator=gen)
    with torch.no_grad():
        want = p(x)
    got = torch.from_numpy(FilterRunner(tmp_path / "p.onnx").run_numpy(x.numpy()))
    assert float((want - x).abs().mean()) > 1e-2 and float((got - want).abs().max()) < 1e-4
    with torch.no_grad():  # the resize filter's picture inside the border (1e-12 learning rate: one step moves nothing)
        assert float((want - g.eval()(x))[..., 1:-1, 1:-1].abs().max()) < 1e-4
    import onnx
    from fastdream.distill.quantize import float_tail

    kept = float_tail(onnx.load(str(tmp_path / "p.onnx")))  # 8 bits: the whole output stage stays in float
    assert any(n.startswith("/out_picture/") for n in kept) and any(n.startswith("/out_phases/") for n in kept)
    rebuilt, meta = generator_from_onnx(tmp_path / "p.onnx")
    assert rebuilt.config.output == "phases" and '"output": "phases"' in meta["fastdream.arch"]
    # fine blocks grow the same way from the command line
    out2 = tmp_path / "pf.pt"
    train(pairs, out2, TrainConfig(**{**v3, "init": str(tmp_path / "p.onnx"), "fine_blocks": 1}))
    ck2 = read_checkpoint(out2)
    assert ck2["generator"]["fine_blocks"] == 1 and ck2["generator"]["output"] == "phases"
    assert "fine1.0.conv2.pointwise.weight" in ck2["model"]
    # a phases filter stays one: the same command line without --output-stage resumes it
    res = train(pairs, out, TrainConfig(**{**v3, "steps": 2, "init": str(tmp_path / "p.onnx")}), resume=True)
    assert res["start_step"] == 1


def test_shipped_float_filter_is_re_exported_with_the_same_pictures(tmp_path, gen, capsys):
    """`fastdream export fast -o F.onnx`: the shipped filter rebuilt from its weights and exported again,
    metadata kept, the same outputs; refusals for files that cannot be rebuilt."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper

    from fastdream.cli.main import main
    from fastdream.distill.runtime import FilterRunner

    out = tmp_path / "fast.onnx"
    assert main(["export", "fast", "-o", str(out)]) == 0
    old, new = FilterRunner("fast", device="cpu"), FilterRunner(out, device="cpu")
    for k in ("fastdream.arch", "fastdream.teacher", "fastdream.training", "fastdream.pad_multiple"):
        assert new.metadata[k] == old.metadata[k]
    x = torch.rand(1, 3, 80, 112, generator=gen).numpy()
    a, b = old.run_numpy(x), new.run_numpy(x)
    assert float(np.abs(a - x).mean()) > 1e-3 and float(np.abs(a - b).max()) <= 1e-4
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "DepthToSpace" in ops  # the half-size output stage
    # a re-exported file re-exports too (the output convolution recovered from the half-size stage)
    assert main(["export", str(out), "-o", str(tmp_path / "again.onnx")]) == 0
    c = FilterRunner(tmp_path / "again.onnx", device="cpu").run_numpy(x)
    assert float(np.abs(c - a).max()) <= 1e-4
    # an 8-bit file, a foreign graph, and a v3 filter whose encoder is not the backbone's cannot be rebuilt
    m = onnx.load(str(out))
    enc = next(t for t in m.graph.initializer if t.name.startswith("onnx::") and len(t.dims) == 4)  # folded: no name
    arr = numpy_helper.to_array(enc).copy() * 1.5
    enc.CopyFrom(numpy_helper.from_array(arr, enc.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(m, str(tampered))
    rc = main(["export", str(tampered), "-o", str(tmp_path / "t2.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not reproduce it" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t2.onnx").exists()
    rc = main(["export", "fast-int8", "-o", str(tmp_path / "t3.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "8-bit filter" in err and not (tmp_path / "t3.onnx").exists()
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 3, 3, padding=1), (torch.rand(1, 3, 32, 32),), str(foreign), dynamo=False)
    rc = main(["export", str(foreign), "-o", str(tmp_path / "t4.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a fastdream filter" in err and not (tmp_path / "t4.onnx").exists()

def test_export_metadata(tmp_path, gen):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from fastdream.distill.export import export_onnx

    _random_checkpoint(tmp_path / "g.pt", gen)
    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["fastdream.format"] == "fastdream-filter-v1"
    assert json.loads(meta["fastdream.teacher"]) == {"preset": "classic"}
    training = json.loads(meta["fastdream.training"])
    assert training["steps"] == 7 and training["val_psnr_db"] == 21.5 and training["params"] > 0
    assert "[0, 1]" in meta["fastdream.input"] and "[0, 1]" in meta["fastdream.output"]
    i = sess.get_inputs()[0]
    assert i.name == "image" and i.shape[1] == 3 and all(isinstance(d, str) for d in (i.shape[0], i.shape[2], i.shape[3]))


def test_export_refuses_bad_checkpoints(tmp_path):
    from fastdream.distill.export import export_onnx

    bad = tmp_path / "bad.pt"
    torch.save({"format": "fastdream-distill-checkpoint-v1", "arch": "fastdream-dreamnet-v1",
                "generator": json.dumps({"width": 4, "blocks": 1}), "model": {"enc1.weight": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="do not fit"):
        export_onnx(bad, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]


def test_v1_checkpoint_without_version_still_loads(tmp_path, gen):
    from fastdream.distill.checkpoint import load_generator

    g = _random_checkpoint(tmp_path / "g.pt", gen, version=1)
    state = torch.load(tmp_path / "g.pt", weights_only=True)
    cfg = json.loads(state["generator"])
    cfg.pop("version")
    cfg.pop("deep")
    cfg.pop("mid_blocks")
    state["generator"] = json.dumps(cfg)
    torch.save(state, tmp_path / "old.pt")
    model, ck = load_generator(tmp_path / "old.pt")
    assert isinstance(model, DreamGenerator) and ck["generator"]["version"] == 1
    x = torch.rand(1, 3, 20, 24, generator=gen)
    with torch.no_grad():
        assert torch.equal(model(x), g(x))


# -- whole pictures at the size of use -------------------------------------------------------------

def test_dataset_whole_pictures_keep_the_aspect(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), "RGB").save(d / "wide.png")
    Image.fromarray(rng.integers(0, 255, (80, 50, 3), dtype=np.uint8), "RGB").save(d / "tall.png")
    params = {"preset": "stand-in", "objective_spec": {"layers": ["block9"]}}
    recipe = CropRecipe(size=64, seed=2, whole=True, min_fraction=0.7, max_fraction=1.0)
    render_dataset(d, tmp_path / "pairs", 8, stand_in_teacher, params, recipe)
    shapes = set()
    for p in list_pairs(tmp_path / "pairs").values():
        x, y = load_pair(p)
        h, w = x.shape[-2:]
        assert max(h, w) == 64 and y.shape == x.shape
        shapes.add("wide" if w > h else "tall")
        assert abs(w / h - (1.5 if w > h else 50 / 80)) < 0.05  # the photo's own aspect
        assert not torch.equal(stand_in_teacher(x[None].float() / 255, 0), x[None].float() / 255)
    assert shapes == {"wide", "tall"}
    render_dataset(d, tmp_path / "again", 8, stand_in_teacher, params, recipe)
    assert _bytes(tmp_path / "pairs") == _bytes(tmp_path / "again")


def test_dataset_too_few_usable_photos_says_how_many(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), "RGB").save(d / "big.png")
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), "RGB").save(d / "small.png")
    params = {"preset": "stand-in", "objective_spec": {"layers": ["block9"]}}
    with pytest.raises(InputError, match=r"1 usable photos found \(2 pictures, of which 1 are too small.*; 5 needed"):
        render_dataset(d, tmp_path / "pairs", 4, stand_in_teacher, params, CropRecipe(size=64, whole=True),
                       min_photos=5)
    assert not (tmp_path / "pairs").exists()
    r = subprocess.run([sys.executable, "-m", "fastdream.cli.main", "distill", "dataset", str(d), "-o",
                        str(tmp_path / "p2"), "--size", "64", "--whole", "--min-photos", "3", "--steps", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "1 usable photos found" in r.stderr and "3 needed" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p2").exists()


# -- the adversarial term -------------------------------------------------------------------------

def test_patch_discriminator_and_hinge_losses(gen):
    from fastdream.distill.losses import PatchDiscriminator, d_hinge, g_hinge

    d = PatchDiscriminator(8)
    x, y = torch.rand(2, 3, 64, 48, generator=gen), torch.rand(2, 3, 64, 48, generator=gen)
    (s,) = d(x, y)
    assert s.shape == (2, 1, 4, 3)
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    assert float(d_hinge(real, fake)) == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert float(g_hinge(fake)) == pytest.approx(1.5)
    # lists of score maps (one per scale): the scales' losses averaged
    real2, fake2 = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    assert float(d_hinge([real, real2], [fake, fake2])) == pytest.approx((0.75 + (1 + 2)) / 2)
    assert float(g_hinge([fake, fake2])) == pytest.approx((1.5 - 1.0) / 2)


def test_multiscale_discriminator_sees_the_pair_shrunk(gen):
    """Scale k is a discriminator of its own on the pair averaged down k times (3x3, stride 2): its
    scores cover 2**k times the pixels, and the finest scale is the single-scale discriminator."""
    from fastdream.distill.losses import PatchDiscriminator

    torch.manual_seed(0)
    d = PatchDiscriminator(8, scales=3)
    x, y = torch.rand(2, 3, 128, 96, generator=gen), torch.rand(2, 3, 128, 96, generator=gen)
    out = d(x, y)
    assert [tuple(o.shape) for o in out] == [(2, 1, 8, 6), (2, 1, 4, 3), (2, 1, 2, 1)]
    d.eval()  # spectral norm: no power iteration, so the calls below see the same weights
    z = torch.cat([x, y], 1) * 2 - 1
    z1 = torch.nn.functional.avg_pool2d(z, 3, stride=2, padding=1, count_include_pad=False)
    torch.testing.assert_close(d(x, y)[1], d.coarser[0](z1))
    torch.testing.assert_close(d(x, y)[0], d.net(z))
    one = PatchDiscriminator(8)
    assert set(one.state_dict()) == {k for k in d.state_dict() if not k.startswith("coarser.")}
    # a change to the picture far from a coarse score's window leaves that score alone; the finest
    # scale's window is smaller, so more of its scores stay put
    y2 = y.clone()
    y2[..., :16, :16] += 0.5
    moved = [(a != b).float().mean().item() for a, b in zip(d(x, y), d(x, y2))]
    assert 0 < moved[0] < moved[1] and moved[2] > 0
    with pytest.raises(ValueError, match="1..4"):
        PatchDiscriminator(8, scales=0)


def test_grid_excess_sees_a_pattern_fixed_to_the_pixel_grid_not_texture(gen):
    """A 2x2-periodic pattern (what free output phases can draw) is measured; texture of the same
    amplitude whose details change sign from block to block mostly averages away; a grid the target
    has too costs nothing."""
    from fastdream.distill.losses import grid_excess, phase_grid

    flat = torch.full((1, 3, 64, 64), 0.5)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(32, 32) * 0.01
    grid = flat + checker
    noise = flat + 0.01 * torch.sign(torch.randn(1, 3, 64, 64, generator=gen))
    assert float(grid_excess(grid, flat)) == pytest.approx(1 / 3, rel=1e-4)   # the scale the docstring gives
    stripes = flat + torch.tensor([1.0, -1.0]).repeat(64, 32) * 0.01
    assert float(grid_excess(stripes, flat)) == pytest.approx(1 / 3, rel=1e-4)
    assert float(grid_excess(noise, flat)) < 0.1
    assert float(grid_excess(grid, grid)) == 0.0 and float(grid_excess(flat, grid)) == 0.0
    assert phase_grid(torch.rand(2, 3, 37, 50, generator=gen)).shape == (2, 9, 3, 4)
    # only the stripe of the picture that holds the grid counts, block by block
    half = flat.clone()
    half[..., :32, :] += checker[:32]
    assert float(grid_excess(half, flat)) == pytest.approx(1 / 6, rel=1e-4)


def test_training_with_the_grid_term(pairs, tmp_path):
    res = train(pairs, tmp_path / "g.pt", TrainConfig(**{**TINY, "steps": 1, "grid_weight": 2.0}))
    assert "grid" in res["last_losses"] and res["last_losses"]["grid"] >= 0
    with pytest.raises(FastdreamError, match="grid_weight must be >= 0"):
        TrainConfig(**{**TINY, "grid_weight": -1.0}).validate()


def test_training_with_the_discriminator_resumes_exactly(pairs, tmp_path):
    cfg = dict(TINY, adversarial_weight=0.5, adversarial_start=1, disc_width=4, steps=4)
    full = tmp_path / "full.pt"
    res = train(pairs, full, TrainConfig(**cfg))
    assert "disc" in res["last_losses"] and "adversarial" in res["last_losses"]
    part = tmp_path / "part.pt"

    def stop_at_3(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(pairs, part, TrainConfig(**cfg), progress=stop_at_3)
    train(pairs, part, TrainConfig(**cfg), resume=True)
    a, b = read_checkpoint(full), read_checkpoint(part)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["discriminator"]:
        assert torch.equal(a["discriminator"][k], b["discriminator"][k]), k



def test_training_with_a_multiscale_discriminator_resumes_and_refuses_other_scales(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "ph").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 56, 3), dtype=np.uint8), "RGB").save(tmp_path / "ph" / f"{i}.png")
    pairs = tmp_path / "pairs"
    render_dataset(tmp_path / "ph", pairs, 8, stand_in_teacher, {"preset": "stand-in"}, CropRecipe(size=40, seed=3))
    cfg = dict(TINY, adversarial_weight=0.5, adversarial_start=1, disc_width=4, disc_scales=2, steps=3, crop=32)
    with pytest.raises(FastdreamError, match="2 scale.*at least 32 pixels, got 16"):
        TrainConfig(**dict(cfg, crop=16)).validate()
    out = tmp_path / "ms.pt"
    res = train(pairs, out, TrainConfig(**dict(cfg, until=2)))
    assert "disc" in res["last_losses"]
    ck = read_checkpoint(out)
    assert any(k.startswith("coarser.0.") for k in ck["discriminator"])
    with pytest.raises(InputError, match="2 scale.*not 4 and 1.*--disc-scales"):
        train(pairs, out, TrainConfig(**dict(cfg, disc_scales=1)), resume=True)
    train(pairs, out, TrainConfig(**cfg), resume=True)
    assert read_checkpoint(out)["step"] == 3


def test_highpass_discriminator_sees_only_the_fine_band(tmp_path):
    from fastdream.distill.losses import PatchDiscriminator

    torch.manual_seed(5)
    D = PatchDiscriminator(8, 2, highpass=1.0).eval()
    x, y = torch.rand(2, 3, 48, 40), torch.rand(2, 3, 48, 40)
    # the fine band against a plain 2-d Gaussian of sigma 1 (radius 3), reflected at the borders
    r = torch.arange(-3, 4, dtype=torch.float64)
    g = torch.exp(-r * r / 2)
    k = torch.outer(g, g) / torch.outer(g, g).sum()
    blur = F.conv2d(F.pad(y.double().reshape(6, 1, 48, 40), (3, 3, 3, 3), mode="reflect"), k[None, None])
    ref = (y.double() - blur.reshape(2, 3, 48, 40)) * PatchDiscriminator.HIGHPASS_GAIN
    assert torch.allclose(D.fine_band(y).double(), ref, atol=1e-5)
    with torch.no_grad():
        base = D(x, y)
        # a change of the dream's brightness leaves the scores as they were
        for a, b in zip(base, D(x, y + 0.1)):
            assert torch.allclose(a, b, atol=1e-5)
        for a, b in zip(base, D(x, y + 0.05 * torch.randn_like(y))):  # fine texture moves them
            assert (a - b).abs().max() > 1e-4
        for a, b in zip(base, D(x + 0.1, y)):  # the photo is seen whole
            assert (a - b).abs().max() > 1e-4
        # the whole-dream discriminator, by contrast, sees the brightness
        W = PatchDiscriminator(8, 1).eval()
        assert (W(x, y)[0] - W(x, y + 0.1)[0]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="high-pass sigma"):
        PatchDiscriminator(8, 1, highpass=9.0)
    with pytest.raises(FastdreamError, match="high-pass sigma must be in 0..8"):
        TrainConfig(**{**TINY, "disc_highpass": -1.0}).validate()


def test_training_with_a_highpass_discriminator_resumes_and_refuses_another_sigma(pairs, tmp_path):
    cfg = dict(TINY, adversarial_weight=0.5, adversarial_start=1, disc_width=4, steps=3, disc_highpass=1.0)
    out = tmp_path / "hp.pt"
    res = train(pairs, out, TrainConfig(**dict(cfg, until=2)))
    assert "disc" in res["last_losses"] and "adversarial" in res["last_losses"]
    assert read_checkpoint(out)["train_config"]["disc_highpass"] == 1.0
    with pytest.raises(InputError, match="high-pass of sigma 1.0, not 0.0.*--disc-highpass"):
        train(pairs, out, TrainConfig(**dict(cfg, disc_highpass=0.0)), resume=True)
    train(pairs, out, TrainConfig(**cfg), resume=True)
    assert read_checkpoint(out)["step"] == 3


# -- fidelity, judged by EfficientNet-Lite2 --------------------------------------------------------

def test_eval_judges_an_identity_filter_as_no_closer_than_the_photo(tmp_path, gen):
    """An untrained v2 filter is the identity: its Lite2 ratios are 1 (no closer to the teacher's dream
    than the photo), while another teacher seed is closer than the photo (ratio below 1)."""
    pytest.importorskip("onnxruntime")
    from fastdream.distill.evaluate import evaluate_filter
    from fastdream.distill.export import export_onnx

    g = DreamNet(GeneratorConfig(width=4, blocks=1, deep=8, mid_blocks=0))
    opt = torch.optim.Adam(g.parameters())
    teacher = {"preset": "classic", "objective_spec": {"layers": ["block9"]}, "octaves": 1, "steps": 4,
               "step_size": 0.03}
    save_checkpoint(tmp_path / "g.pt", g, opt, 1, TrainConfig(width=4, blocks=1, deep=8, mid_blocks=0), teacher, [])
    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(REPO / "examples" / "chelsea.jpg").convert("RGB").save(photos / "cat.png")
    res = evaluate_filter(photos, model=tmp_path / "g.onnx", size=(96, 64), reference_seed=1)
    r = res["pictures"][0]
    assert r["size"] == [96, 64]
    assert r["lpips_ratio"] == pytest.approx(1.0, abs=1e-3) and r["gram_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert r["reference_lpips_ratio"] < 0.95
    assert res["summary"]["lpips_ratio_worst"] == pytest.approx(r["lpips_ratio"])
    assert abs(r["gain_fraction"]) < 0.05
    # refined by the teacher's four steps at full size, the identity filter is the teacher (one octave of
    # four steps, the same seed): no distance left and all of the gain
    res = evaluate_filter(photos, model=tmp_path / "g.onnx", size=(96, 64), refine=4)
    r = res["pictures"][0]
    assert res["summary"]["refine"] == 4
    assert r["lpips_ratio"] < 0.02 and r["gram_ratio"] < 0.02 and r["gain_fraction"] == pytest.approx(1.0, abs=0.02)


def test_tiled_filter_matches_one_pass_for_a_pointwise_model(tmp_path):
    """A model without spatial context gives the same picture in tiles (the one tiler of fastdream
    blends them) as in one pass."""
    pytest.importorskip("onnxruntime")
    from fastdream.distill.runtime import FilterRunner

    class Pointwise(torch.nn.Module):
        def forward(self, x):
            return (x[:, [2, 0, 1]] * 0.8 + 0.1).clamp(0, 1)

    torch.onnx.export(Pointwise(), (torch.rand(1, 3, 16, 16),), tmp_path / "p.onnx", dynamo=False,
                      input_names=["image"], output_names=["dream"],
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "dream": {0: "n", 2: "h", 3: "w"}})
    x = np.random.default_rng(0).random((1, 3, 70, 90), dtype=np.float32)
    whole = FilterRunner(tmp_path / "p.onnx", device="cpu").run_numpy(x)
    tiled = FilterRunner(tmp_path / "p.onnx", device="cpu", max_pixels=1000, tile=32, tile_overlap=8).run_numpy(x)
    assert np.abs(whole - tiled).max() < 1e-5
