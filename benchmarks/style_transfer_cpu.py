"""Gatys et al.'s style transfer on the CPU: cnn_jax (optax L-BFGS) vs PyTorch (torch.optim.LBFGS).

Both frameworks run the same method in the same process: VGG-19's convolutions with
torchvision's architecture, layer indices and initialization (no ImageNet weights can
be downloaded here; the timing does not depend on the weight values), average pooling,
content ``relu4_2``, style ``relu1_1`` ... ``relu5_1`` with the paper's normalization,
``alpha / beta = 1e-3``, from the same white noise, L-BFGS with memory 10 and a strong
Wolfe line search, ``--iters`` iterations, on ``--threads`` CPU threads each. The
PyTorch version is written here (``torch_stylize``); cnn_jax's is
``cnn_jax.style.stylize`` (Winograd's F(4x4, 3x3) for VGG's wide layers unless
``--winograd=off``), run in jit-compiled chunks of ``gcd(iters, 50)`` steps; an
untimed first call compiles the chunk (its time, with one chunk's steps, is reported
separately). Rounds are interleaved. PyTorch's number of loss evaluations is reported
(optax's line search makes one per iteration once L-BFGS has a curvature estimate).

Run: ``python -m benchmarks.style_transfer_cpu [--size=512 --iters=300 --rounds=1]``.
The goal is cnn_jax at most 0.8x PyTorch's time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

#: torchvision's vgg19 ``features``: conv widths and 'M' (a pooling).
CFG_E = (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M")


def torch_vgg19_features(torch: Any, seed: int = 0, pooling: str = "max") -> Any:
    """Builds torchvision's ``vgg19().features`` layer by layer (same indices, init).

    Kaiming-normal convolutions (``fan_out``, ReLU gain) with zero biases, as
    torchvision's ``VGG._initialize_weights``; ``state_dict()`` keys are ``N.weight``
    (prefix ``features.`` for torchvision's file layout).
    """
    torch.manual_seed(seed)
    layers: list[Any] = []
    c = 3
    for v in CFG_E:
        if v == "M":
            pool = torch.nn.MaxPool2d if pooling == "max" else torch.nn.AvgPool2d
            layers.append(pool(kernel_size=2, stride=2))
            continue
        conv = torch.nn.Conv2d(c, v, kernel_size=3, padding=1)
        torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
        layers += [conv, torch.nn.ReLU(inplace=False)]
        c = v
    return torch.nn.Sequential(*layers).eval()


def torch_state_dict(net: Any) -> dict[str, np.ndarray]:
    """The features' state dict with torchvision's ``features.`` prefix, as numpy."""
    return {f"features.{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()}


#: torchvision feature index (after the ReLU) of the layers used here.
TORCH_INDEX = {
    "relu1_1": 1,
    "relu2_1": 6,
    "relu3_1": 11,
    "relu4_1": 20,
    "relu4_2": 22,
    "relu5_1": 29,
}


def torch_features(net: Any, x: Any, layers: tuple[str, ...]) -> dict[str, Any]:
    """Runs ``net`` up to the deepest layer, returning ``{layer: NCHW tensor}``."""
    want = {TORCH_INDEX[n]: n for n in layers}
    out = {}
    for i, m in enumerate(net):
        x = m(x)
        if i in want:
            out[want[i]] = x
        if len(out) == len(want):
            break
    return out


def torch_stylize(
    torch: Any,
    net: Any,
    content: np.ndarray,
    style: np.ndarray,
    init: np.ndarray,
    iters: int,
    alpha: float = 1.0,
    beta: float = 1e3,
    content_layers: tuple[str, ...] = ("relu4_2",),
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
) -> tuple[np.ndarray, float, int]:
    """Gatys et al. in PyTorch: ``torch.optim.LBFGS`` (memory 10, strong Wolfe), NCHW.

    Returns:
      ``(image (H, W, 3), final loss, loss evaluations made by the optimizer)``.
    """
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    layers = tuple(dict.fromkeys((*content_layers, *style_layers)))

    def nchw(x: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))

    def feats(x: Any) -> dict[str, Any]:
        return torch_features(net, (x - mean) / std, layers)

    def gram(f: Any) -> Any:
        _, n, h, w = f.shape
        f = f.reshape(n, h * w)
        return f @ f.t()

    with torch.no_grad():
        fc = feats(nchw(content))
        fs = feats(nchw(style))
        targets = {n: fc[n] for n in content_layers}
        grams = {n: gram(fs[n]) for n in style_layers}
    img = nchw(init).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [img],
        lr=1,
        max_iter=iters,
        max_eval=iters * 25,
        history_size=10,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Any:
        opt.zero_grad()
        f = feats(img)
        lc = sum(0.5 * ((f[n] - targets[n]) ** 2).sum() for n in content_layers)
        ls = 0.0
        for n in style_layers:
            _, c, h, w = f[n].shape
            ls = ls + ((gram(f[n]) - grams[n]) ** 2).sum() / (4.0 * c**2 * (h * w) ** 2)
        loss = alpha * lc + beta * ls / len(style_layers)
        loss.backward()
        return loss

    opt.step(closure)
    evals = int(opt.state[img]["func_evals"])
    final = float(closure().detach())
    return img.detach()[0].permute(1, 2, 0).numpy(), final, evals


def main(argv: list[str] | None = None) -> None:
    """Times both transfers interleaved and prints (and optionally writes) the result."""
    from benchmarks import common

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--iters", type=int, default=300, help="L-BFGS iterations (300)")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds of each (1)")
    parser.add_argument(
        "--winograd",
        choices=("on", "off"),
        default="on",
        help="cnn_jax's Winograd F(4x4, 3x3) for VGG's wide layers (on: stylize's CPU default)",
    )
    parser.add_argument("--json", default=None, help="write the result here")
    common.add_setup_arguments(parser)
    ns = parser.parse_args(argv)
    if ns.size < 16 or ns.iters < 1 or ns.rounds < 1:
        parser.error("--size must be >= 16 (relu5_1), --iters and --rounds >= 1")
    used = common.start(ns)
    torch = common.optional_torch()
    if torch is None:
        raise SystemExit("benchmarks.style_transfer_cpu needs PyTorch CPU: pip install torch")
    import jax

    from cnn_jax import style

    rng = np.random.default_rng(0)
    s = ns.size
    yy, xx = np.mgrid[0:s, 0:s] / s
    content = np.stack([yy, xx, 0.5 + 0.5 * np.sin(8 * xx * yy)], -1).astype(np.float32)
    style_img = rng.random((s, s, 3)).astype(np.float32)
    init = rng.random((s, s, 3)).astype(np.float32)
    net = torch_vgg19_features(torch, 0, pooling="avg")
    for p in net.parameters():
        p.requires_grad_(False)
    params = style.load_vgg19(torch_state_dict(net))

    # chunks of `chunk` steps (one compiled lax.scan, reused): the untimed first call
    # compiles it and runs one chunk only
    chunk = math.gcd(ns.iters, 50)

    def run_jax(iters: int) -> float:
        _, hist = style.stylize(
            params,
            content,
            style_img,
            steps=iters,
            init=init,
            callback_every=chunk,
            winograd=ns.winograd == "on",
        )
        return float(jax.block_until_ready(hist)[-1])

    t = time.perf_counter()
    run_jax(chunk)
    first = time.perf_counter() - t
    times: dict[str, list[float]] = {"cnn_jax": [], "pytorch": []}
    cpu: dict[str, list[float]] = {"cnn_jax": [], "pytorch": []}
    final: dict[str, float] = {}
    for r in range(ns.rounds):
        t, c = time.perf_counter(), time.process_time()
        _, final["pytorch"], evals = torch_stylize(torch, net, content, style_img, init, ns.iters)
        times["pytorch"].append(time.perf_counter() - t)
        cpu["pytorch"].append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        final["cnn_jax"] = run_jax(ns.iters)
        times["cnn_jax"].append(time.perf_counter() - t)
        cpu["cnn_jax"].append(time.process_time() - c)
        print(
            f"round {r}: cnn_jax {times['cnn_jax'][-1]:.1f} s (CPU {cpu['cnn_jax'][-1]:.1f} s), "
            f"pytorch {times['pytorch'][-1]:.1f} s (CPU {cpu['pytorch'][-1]:.1f} s)",
            flush=True,
        )
    med = {k: float(np.median(v)) for k, v in times.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    result = {
        "size": s,
        "iters": ns.iters,
        "threads": used,
        "median_seconds": med,
        # the process's CPU time (both threads): the work done, less sensitive than the
        # wall time to other processes on a shared machine
        "median_cpu_seconds": med_cpu,
        "cpu_ratio_cnn_jax_over_pytorch": med_cpu["cnn_jax"] / med_cpu["pytorch"],
        "rounds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "cnn_jax_chunk_steps": chunk,
        "cnn_jax_winograd": ns.winograd,
        "cnn_jax_first_chunk_with_compile_s": first,
        "pytorch_loss_evaluations": evals,
        "ratio_cnn_jax_over_pytorch": med["cnn_jax"] / med["pytorch"],
        "final_loss": final,
        "machine": common.machine_lines(used),
    }
    print(json.dumps(result, indent=1))
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
