"""The MTCNN port against real pictures (a face photo, photos without faces), its NMS against OpenCV's,
the Face objective's gradients and report, and the size checks."""
import pytest
import torch

from fastdream.detectors.mtcnn import ONet, PNet, RNet, box_iou, get_detector, nms
from fastdream.engine.faces import Face, face_report
from fastdream.engine.objectives import Context
from fastdream.errors import FastdreamError
from fastdream.imageio import load_image

from conftest import DATA, REPO


@pytest.fixture(scope="module")
def det():
    return get_detector("cpu")


def test_weights_ship_with_their_licence():
    folder = REPO / "fastdream" / "detectors" / "data"
    for name in ("pnet", "rnet", "onet"):
        assert (folder / f"{name}.pt").stat().st_size > 10_000
    text = (folder / "LICENSE-facenet-pytorch.md").read_text()
    assert "MIT License" in text and "Timothy Esler" in text


def test_network_shapes():
    g = torch.Generator().manual_seed(0)
    reg, logits = PNet()(torch.randn(2, 3, 30, 41, generator=g))
    assert reg.shape == (2, 4, 10, 16) and logits.shape == (2, 2, 10, 16)
    reg, logits = RNet()(torch.randn(3, 3, 24, 24, generator=g))
    assert reg.shape == (3, 4) and logits.shape == (3, 2)
    reg, marks, logits = ONet()(torch.randn(3, 3, 48, 48, generator=g))
    assert reg.shape == (3, 4) and marks.shape == (3, 10) and logits.shape == (3, 2)


def test_finds_the_astronauts_face(det):
    x, _ = load_image(DATA / "astronaut_128.jpg")
    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", antialias=True).clamp(0, 1)
    found = det.detect(x)
    assert len(found) == 1
    # her face, eyebrows to chin and cheek to cheek (checked by eye on the 256-pixel picture)
    truth = torch.tensor([[92.0, 32.0, 134.0, 86.0]])
    assert float(box_iou(found.boxes, truth)[0, 0]) > 0.6
    assert float(found.scores[0]) > 0.99
    (lx, ly), (rx, ry), (nx, ny) = found.landmarks[0, :3].tolist()
    assert lx < nx < rx and ly < ny and ry < ny  # eyes left and right of the nose, above it


def test_no_faces_on_a_cat_or_on_noise(det):
    x, _ = load_image(DATA / "chelsea_224.jpg")
    assert len(det.detect(x)) == 0
    noise = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    assert len(det.detect(noise)) == 0


def test_nms_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(7)
    for n in (1, 5, 40):
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * 40 + 5
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.rand(n, generator=g)
        for thr in (0.3, 0.5, 0.7):
            ours = nms(boxes, scores, thr, plus_one=False).tolist()
            ref = cv2.dnn.NMSBoxes([[float(a), float(b), float(c), float(d)] for a, b, c, d in torch.cat([xy, wh], 1)],
                                   scores.tolist(), 0.0, thr)
            assert sorted(ours) == sorted(int(i) for i in ref), (n, thr)


def test_nms_min_mode():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 2, 6, 6], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.7, "union").tolist() == [0, 1, 2]  # the small box overlaps little of the big one
    assert nms(boxes, scores, 0.7, "min").tolist() == [0, 2]       # but lies inside it


def test_too_small_for_the_detector(det):
    with pytest.raises(FastdreamError, match="too small for the face detector"):
        det.detect(torch.rand(1, 3, 15, 200))
    assert det.scales(20, 20) == [0.6]


def test_face_objective_gradient_and_report(det):
    x, _ = load_image(DATA / "astronaut_128.jpg")
    x = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", antialias=True).clamp(0, 1)
    on_face = Face((92 / 256, 32 / 256, 134 / 256, 86 / 256), detector=det)
    off_face = Face((150 / 256, 150 / 256, 210 / 256, 210 / 256), detector=det)
    with torch.no_grad():
        v_on = float(on_face({}, Context((256, 256), image=x)))
        v_off = float(off_face({}, Context((256, 256), image=x)))
    assert v_on > v_off + 1.0
    xg = x.clone().requires_grad_(True)
    off_face({}, Context((256, 256), image=xg, generator=torch.Generator().manual_seed(0))).sum().backward()
    g = xg.grad.abs().sum(1)[0]
    assert g[150:210, 150:210].sum() > 0.9 * g.sum()  # it looks at its box
    rows = face_report(x, [(92, 32, 134, 86), (150, 150, 210, 210)], detector=det)
    assert rows[0]["detected"] and rows[0]["iou"] > 0.6 and rows[0]["score"] > 0.99
    assert not rows[1]["detected"] and rows[1]["iou"] == 0.0


def test_face_suppress_looks_outside_the_kept_boxes(det):
    from fastdream.engine.faces import FaceSuppress

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    keep = (0.0, 0.0, 0.5, 0.5)
    v = FaceSuppress([keep], detector=det)({}, Context((64, 64), image=x))
    assert v.shape == (1,) and float(v.detach()) <= 0
    v.sum().backward()
    g = x.grad.abs().sum(1)[0]
    assert g[40:, 40:].sum() > 0 and g[:20, :20].sum() < 0.2 * g.sum()
