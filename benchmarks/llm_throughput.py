"""GPT-2 sequence-classifier throughput on the present device: sequences/s for fine-tuning (the recipe's
training step) and for one unlearning step of gd, npo and scrub, and peak memory, for the tiny from-scratch
model of gpt2_imdb_tiny and for GPT-2 124M's shape (12 layers, 768 wide, 12 heads, GPT-2's 50,257-token
vocabulary; random weights: the compute is that of the pretrained model), side by side in one run.

    python benchmarks/llm_throughput.py [--configs tiny,124m] [--max-len 64] [--batch-size 16] [--steps 5]

Token ids are random (throughput does not depend on them; nothing is downloaded). Training goes through
training.train_from_scratch (device-resident batches, bf16 autocast on CUDA); unlearning through the
methods themselves, as trials run them, under a budget of `--steps` of their own batches. Peak memory is
the CUDA allocator's peak on a GPU, else the process's peak RSS (which includes imports)."""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from sweeper.budget import Budget
from sweeper.data import DataSet, Split
from sweeper.methods import UnlearnData
from sweeper.registry import methods, models
from sweeper.training import Recipe, autocast, prepare, train_from_scratch

CONFIGS = {"tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab": 300},
           "124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab": 50257}}


def text_data(vocab: int, n: int, max_len: int) -> DataSet:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(max_len // 2, max_len + 1, (n,), generator=g)
    x = torch.randint(1, vocab, (n, max_len), generator=g)
    x[torch.arange(max_len).expand(n, -1) >= lengths[:, None]] = 0  # right padding, pad id 0
    split = Split(x, torch.randint(0, 2, (n,), generator=g))
    return DataSet("random-tokens", split, split, split, 2, (0.0,), (1.0,),
                   text={"pad_id": 0, "vocab_size": vocab, "max_len": max_len, "encode": None})


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA peak)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (peak RSS)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, arch: dict, args, device: torch.device) -> dict:
    n = args.batch_size * args.steps
    data = text_data(arch["vocab"], n, args.max_len)
    build = lambda: prepare(models.get("gpt2")(data, n_layer=arch["n_layer"], n_embd=arch["n_embd"],  # noqa: E731
                                               n_head=arch["n_head"]), device)
    recipe = Recipe(epochs=1, batch_size=args.batch_size, lr=1e-4, momentum=0.9, weight_decay=0.0,
                    amp=device.type == "cuda")
    train_from_scratch(build(), Split(data.train.x[:args.batch_size], data.train.y[:args.batch_size]).to(device),
                       recipe, 0)  # warm-up: allocator, kernels
    sync(device)
    t = time.perf_counter()
    model = train_from_scratch(build(), data.train.to(device), recipe, 0)
    sync(device)
    out = {"config": name, "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "train_seq_per_s": round(n / (time.perf_counter() - t), 1)}
    half = Split(data.train.x[: n // 2], data.train.y[: n // 2]).to(device)
    rest = Split(data.train.x[n // 2:], data.train.y[n // 2:]).to(device)
    for method in args.methods.split(","):
        m = build()
        unlearn = UnlearnData(rest, half, 2, recipe, 0)
        units = 3 * args.batch_size * args.steps  # about `steps` batches of forward + backward
        budget = Budget(units * 20, [units / (units * 20)], lambda *_: None, device)
        sync(device)
        t = time.perf_counter()
        with autocast(recipe, device):
            methods.get(method).unlearn(m, unlearn, budget)
        sync(device)
        seconds = time.perf_counter() - t
        out[f"{method}_units_per_s"] = round(budget.spent / seconds, 1)
        out[f"{method}_seq_steps_per_s"] = round(budget.spent / 3 / seconds, 1)  # sequences through fwd+bwd
    out["peak_memory"] = peak_memory(device)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,124m")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--methods", default="gd,npo,scrub")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"max_len {args.max_len}, batch {args.batch_size}")
    rows = [measure(name, CONFIGS[name], args, device) for name in args.configs.split(",")]
    for r in rows:
        print(json.dumps(r))
    if len(rows) > 1:
        print(f"train seq/s ratio {rows[0]['config']}/{rows[1]['config']}: "
              f"{rows[0]['train_seq_per_s'] / rows[1]['train_seq_per_s']:.1f}x")


if __name__ == "__main__":
    main()
