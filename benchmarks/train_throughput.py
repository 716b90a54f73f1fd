"""Training and unlearning throughput on the present device: images/s, seconds per epoch, FLOPs per
epoch and the fraction of the device's dense bf16 peak; then trials per hour with 1, 2 and 4 trials
sharing the device (separate processes, as Ray runs them).

    python benchmarks/train_throughput.py [--model resnet18] [--width 64] [--n 50000] [--batch-size 512]
                                          [--compile] [--data-root DIR] [--sharing 1,2,4]

Inputs are random tensors of CIFAR-10's shape (3x32x32, 10 classes) unless --data-root names a CIFAR-10
folder: throughput does not depend on pixel values, and these machines cannot download the data set.
The training step is the recipe's (training.train_from_scratch: device-resident data, crop + flip on the
device, bf16 autocast and channels_last on CUDA); the unlearning step is one `gd` step (the same forward
+ backward on retain data at the method's lr), measured through sweeper.methods so it is what trials run.
FLOPs come from torch.utils.flop_counter on one forward + backward batch (multiply-add = 2 FLOPs)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from sweeper.data import DataSet, Split
from sweeper.registry import models
from sweeper.training import Recipe, autocast, prepare, train_from_scratch

PEAK_BF16 = {"H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H200": 989e12, "H100 PCIe": 756e12}  # dense, TFLOP/s


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return f"cpu ({os.cpu_count()} cores)", None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16.items():
        if all(part in name for part in key.split()):
            return name, peak
    return name, None


def data(args, device: torch.device) -> DataSet:
    if args.data_root:
        from sweeper.registry import datasets
        return datasets.get("cifar10")(root=args.data_root)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(args.n, 3, 32, 32, generator=g), torch.randint(0, 10, (args.n,), generator=g)
    split = Split(x, y)
    return DataSet("random-cifar-shape", split, split, split, 10, (0.5,) * 3, (0.25,) * 3)


def flops_per_example(model, x: torch.Tensor, recipe: Recipe) -> float:
    counter = FlopCounterMode(display=False)
    with counter, autocast(recipe, x.device):
        F.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long, device=x.device)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch_seconds(ds: DataSet, args, device: torch.device, recipe: Recipe) -> float:
    """Wall seconds of one epoch after one warm-up epoch (compilation, cuDNN autotuning)."""
    split = ds.train.to(device)
    model = models.get(args.model)(ds, width=args.width)
    train_from_scratch(model, split, recipe, seed=0)  # warm-up epoch
    sync(device)
    start = time.perf_counter()
    train_from_scratch(model, split, recipe, seed=1)
    sync(device)
    return time.perf_counter() - start


def unlearn_step_seconds(ds: DataSet, args, device: torch.device, recipe: Recipe, steps: int = 20) -> float:
    from sweeper.budget import Budget
    from sweeper.methods import UnlearnData
    from sweeper.registry import methods

    model = prepare(models.get(args.model)(ds, width=args.width), device)
    split = ds.train.to(device)
    retain, forget = split.subset(torch.arange(args.batch_size, len(split))), split.subset(torch.arange(args.batch_size))
    data = UnlearnData(retain, forget, 10, recipe, 0)
    units = 3 * args.batch_size * steps
    gd = methods.get("gd")
    for n in (2, steps):  # the first call warms up
        budget = Budget(units * 10, [n * 3 * args.batch_size / (units * 10)], lambda f, u: None, device)
        sync(device)
        start = time.perf_counter()
        with autocast(recipe, device):
            gd.unlearn(model, data, budget)
        sync(device)
        elapsed = time.perf_counter() - start
    return elapsed / steps


def single(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ds = data(args, device)
    recipe = Recipe(epochs=1, batch_size=args.batch_size, lr=0.05, augment=True, compile=args.compile)
    model = prepare(models.get(args.model)(ds, width=args.width), device)
    flops = flops_per_example(model, ds.train.x[: min(64, args.n)].to(device), recipe)
    epoch = train_epoch_seconds(ds, args, device, recipe)
    step = unlearn_step_seconds(ds, args, device, recipe)
    name, peak = device_peak(device)
    n = len(ds.train)
    return {"device": name, "n": n, "epoch_s": epoch, "train_img_s": n / epoch,
            "flops_epoch": flops * n, "mfu": flops * n / epoch / peak if peak else None,
            "unlearn_step_s": step, "unlearn_img_s": args.batch_size / step}


def sharing(args, k: int) -> float:
    """Trials per hour with `k` processes each running one fixed trial workload (an epoch of training,
    standing for a trial's 10% budget of a 10-epoch recipe) on the same device at once."""
    cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--width", str(args.width), "--n", str(args.n),
           "--batch-size", str(args.batch_size)] + (["--compile"] if args.compile else [])
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(k)]
    if any(p.wait() for p in procs):
        raise SystemExit("a sharing worker failed")
    return k * 3600 / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--n", type=int, default=50_000, help="training images (random data only)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--data-root")
    ap.add_argument("--sharing", default="1,2,4", help="trial counts sharing the device ('' to skip)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cpu":
            torch.set_num_threads(1)  # k CPU "trials" share the cores as Ray's 1-CPU trials do
        ds = data(args, device)
        model = models.get(args.model)(ds, width=args.width)
        train_from_scratch(model, ds.train.to(device), Recipe(epochs=1, batch_size=args.batch_size, augment=True,
                                                              compile=args.compile), seed=0)
        sync(device)
        return
    r = single(args)
    print(f"device {r['device']}; {args.model} width {args.width}, batch {args.batch_size}, {r['n']} images, "
          f"compile {args.compile}")
    print(json.dumps(r))
    mfu = f"{r['mfu']:.1%} of dense bf16 peak" if r["mfu"] is not None else "peak unknown for this device"
    print(f"training: {r['epoch_s']:.2f} s/epoch, {r['train_img_s']:.0f} images/s, "
          f"{r['flops_epoch'] / 1e12:.1f} TFLOP/epoch, {mfu}")
    print(f"unlearning (gd): {r['unlearn_step_s'] * 1e3:.1f} ms/step, {r['unlearn_img_s']:.0f} images/s")
    counts = [int(k) for k in args.sharing.split(",") if k]
    rates = {k: sharing(args, k) for k in counts}
    for k, rate in rates.items():
        print(f"{k} trial(s) sharing the device: {rate:.0f} trials/hour ({rate / rates[counts[0]]:.2f}x of {counts[0]})")


if __name__ == "__main__":
    main()
