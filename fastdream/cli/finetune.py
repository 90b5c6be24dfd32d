"""fastdream finetune FOLDER -o backbone.pt: retrain the classifier head on a folder of class subfolders."""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

from fastdream.cli.common import number, progress_bar
from fastdream.errors import InputError


def add_parser(sub):
    p = sub.add_parser("finetune", help="retrain the classifier on your own classes", description=(
        "Replace the ImageNet classifier of the embedded EfficientNet-Lite0 by one for the subfolders of FOLDER "
        "(one per class, named after it) and train it, optionally with the last blocks (--train-blocks N): "
        "stratified train/validation split, augmentation, early stop on validation accuracy. Unreadable pictures "
        "are skipped with a warning (an error if more than half). The output is a checkpoint with the class "
        "names: `fastdream visualize --backbone OUT --class NAME` and `fastdream dream --backbone OUT "
        "--class NAME` use the new classes by name."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a folder with one subfolder of pictures per class")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (.pt)")
    p.add_argument("--train-blocks", type=number(int, 0, 16), default=0,
                   help="also train the head convolution and the last N blocks (default 0: the classifier only)")
    p.add_argument("--epochs", type=number(int, 1, 10000), default=10, help="at most this many epochs (default 10)")
    p.add_argument("--patience", type=number(int, 1, 10000), default=3,
                   help="stop after this many epochs without a better validation accuracy (default 3)")
    p.add_argument("--size", type=number(int, 32, 1024), default=224, help="training picture size (default 224)")
    p.add_argument("--batch-size", type=number(int, 1, 4096), default=16)
    p.add_argument("--lr", type=number(float, 0, 10, lo_open=True), default=1e-3,
                   help="learning rate of the classifier (trained blocks get a tenth), default 0.001")
    p.add_argument("--val-fraction", type=number(float, 0, 0.9, lo_open=True), default=0.2,
                   help="share of each class held out for validation (default 0.2)")
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--report", help="write a JSON report here ('-' for stdout)")
    p.set_defaults(func=run)
    return p


def check_checkpoint_path(path) -> pathlib.Path:
    from fastdream.backbones.loading import CHECKPOINT_SUFFIXES

    p = pathlib.Path(path).expanduser()
    if p.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{p}: a checkpoint needs one of the extensions {', '.join(CHECKPOINT_SUFFIXES)}")
    from fastdream.imageio import check_output_folder

    return check_output_folder(p)


def run(args) -> int:
    from fastdream.cli.visualize import check_report_path
    from fastdream.convert import resolve_device
    from fastdream.featvis.finetune import FinetuneConfig, finetune_folder, scan_folder
    from fastdream.report import peak_rss_mb, write_report

    t0, c0 = time.perf_counter(), time.process_time()
    out = check_checkpoint_path(args.output)
    check_report_path(args.report)
    scan_folder(args.folder)  # the layout, before any slow reading
    device = resolve_device(args.device)
    cfg = FinetuneConfig(train_blocks=args.train_blocks, epochs=args.epochs, size=args.size, batch_size=args.batch_size,
                         lr=args.lr, val_fraction=args.val_fraction, patience=args.patience, seed=args.seed)
    cfg.validate()

    def log(msg):
        print(f"fastdream finetune: {msg}", file=sys.stderr)

    with progress_bar(1, "finetune") as update:
        _, stats = finetune_folder(args.folder, cfg, output=out, device=device, log=log, progress=update)
    if args.report:
        write_report(args.report, {
            "command": "finetune",
            "output": str(out),
            **{k: v for k, v in stats.items() if k != "config"},
            "val_accuracy": stats["best_val_accuracy"],
            "device": str(device),
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3),  # the machine may be shared: CPU time too
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "params": {"command": "finetune", "folder": str(args.folder), **stats["config"]},
        })
    return 0
