"""airbench94 benchmark: the JAX program against the PyTorch reference on CPU, small.

The key check: with the same weights, the flax network computes what the PyTorch one
computes (eval and train mode, TTA views, running statistics), and a few SGD steps with
lookahead land on the same weights.
"""

import dataclasses
import io
import math
import re
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.airbench import Recipe
from benchmarks.airbench import airbench94_jax as abj
from benchmarks.airbench import data as abdata
from cnn_jax import host_memory
from cnn_jax.weights import from_torch
from tests import torch_oracle

torch = torch_oracle.torch()
abt = pytest.importorskip("benchmarks.airbench.airbench94_torch")

pytestmark = pytest.mark.torch

GLIBC = host_memory.has_glibc_malloc()

TINY = Recipe(
    batch_size=8,
    train_epochs=1,
    widths=(8, 16, 16),
    whiten_samples=16,
    eval_batch_size=10,
)


def _torch_variables(net, template):
    """The PyTorch network's state as flax variables (through cnn_jax.weights)."""
    sd = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    return from_torch(sd, template)


def _flax_model(recipe, **kw):
    return abj.AirbenchNet(
        widths=recipe.widths,
        batchnorm_momentum=recipe.batchnorm_momentum,
        batchnorm_eps=recipe.batchnorm_eps,
        scaling_factor=recipe.scaling_factor,
        **kw,
    )


def _randomize_stats(net, gen):
    for mod in net.modules():
        if isinstance(mod, abt.BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.3)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------- recipe


def test_recipe_matches_airbench94_numbers():
    r = Recipe()
    assert r.total_steps(50000) == 476
    assert r.epoch_steps(50000) == [48] * 9 + [44]
    hp = r.sgd_hyperparameters()
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    assert hp["lr"] == pytest.approx(11.5 / kilostep)
    assert hp["lr_bias"] == pytest.approx(64 * 11.5 / kilostep)
    assert hp["wd_over_lr"] * hp["lr"] == pytest.approx(0.0153 * 1024 / kilostep)
    # airbench94.py's triangle(): piecewise linear through (0, .2), (109, 1), (476, .07).
    f = r.lr_factors(476)
    np.testing.assert_allclose(f, np.interp(np.arange(477), [0, 109, 476], [0.2, 1.0, 0.07]))
    assert r.ema_decay(476, 476) == pytest.approx(0.95**5)


def test_recipe_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        Recipe(batch_size=0)
    with pytest.raises(ValueError, match="tta_level"):
        Recipe(tta_level=3)
    with pytest.raises(ValueError, match="num_train"):
        Recipe().steps_per_epoch(100)
    with pytest.raises(ValueError, match="pool"):
        abj.JaxOptions(pool="avg")


# ------------------------------------------------------------------------------ network


def test_parameter_counts_match():
    r = Recipe()
    net = abt.AirbenchNet(r)
    torch_total = sum(p.numel() for p in net.parameters())
    torch_trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    shapes = jax.eval_shape(_flax_model(r).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    total = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))
    trainable, _ = abj.split_params(shapes["params"])
    n_trainable = sum(math.prod(x.shape) for x in jax.tree.leaves(trainable))
    assert total == torch_total == 1_972_792
    assert n_trainable == torch_trainable == 1_972_792 - 288 - (2 * 64 + 4 * 256)


def test_dirac_init_is_identity_on_the_first_filters():
    k = jax.jit(abj.dirac_init, static_argnums=1)(jax.random.key(0, impl="rbg"), (3, 3, 4, 6))
    np.testing.assert_array_equal(k[:, :, :, :4].sum(axis=(0, 1)), np.eye(4))
    np.testing.assert_array_equal(k[1, 1, :, :4], np.eye(4))
    assert float(jnp.abs(k[:, :, :, 4:]).max()) > 0  # the rest keeps the random init
    bound = 1 / math.sqrt(9 * 4)
    assert float(jnp.abs(k[:, :, :, 4:]).max()) <= bound


@pytest.mark.parametrize(
    ("pool", "bn"), [("reshape", "cnn_jax"), ("lax", "onepass"), ("cnn_jax", "cnn_jax")]
)
def test_same_weights_same_outputs(pool, bn):
    """Eval logits, train logits and updated running statistics equal PyTorch's."""
    r = Recipe()  # full widths, a few images
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = abt.AirbenchNet(r)
    with torch.no_grad():
        net.whiten.weight.copy_(torch.randn(net.whiten.weight.shape, generator=gen) * 0.5)
        net.whiten.bias.copy_(torch.randn(net.whiten.bias.shape, generator=gen) * 0.1)
        _randomize_stats(net, gen)
    model = _flax_model(r, pool=abj.POOLS[pool], norm=abj.NORMS[bn])
    template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    variables = _torch_variables(net, template)
    x = np.random.default_rng(0).normal(size=(6, 32, 32, 3)).astype(np.float32)

    net.eval()
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    logits, features = model.apply(variables, x, train=False)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4 * scale, rtol=0)
    assert features["pre_logits"].shape == (6, 256)

    net.train()
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    (logits, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
    stats = _torch_variables(net, template)["batch_stats"]
    for a, b in zip(jax.tree.leaves(updates["batch_stats"]), jax.tree.leaves(stats), strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5)


def test_tta_views_match_torch():
    r = dataclasses.replace(TINY, tta_level=2)
    data = abdata.synthetic_cifar10(16, 10)
    bench = abj.JaxAirbench(data["train"], data["test"], r, abj.JaxOptions(dtype="float32"))
    torch.manual_seed(1)
    net = abt.AirbenchNet(r)
    with torch.no_grad():
        _randomize_stats(net, torch.Generator().manual_seed(1))
    net.eval()
    state = jax.jit(bench.init_state)(bench.key(0))
    template = {
        "params": abj.merge_params(state.trainable, state.frozen),
        "batch_stats": state.batch_stats,
    }
    variables = _torch_variables(net, template)
    trainable, frozen = abj.split_params(variables["params"])
    state = state._replace(trainable=trainable, frozen=frozen, batch_stats=variables["batch_stats"])
    x = abj.normalize(data["test"][0], jnp.float32)
    ours = jax.jit(bench.tta_logits, static_argnums=2)(state, x, 2)
    with torch.no_grad():
        ref = abt.tta_logits(net, _nchw(x), 2).numpy()
        plain = net(_nchw(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
    assert not np.allclose(ref, plain, atol=1e-3 * np.abs(ref).max())  # the views matter


# ---------------------------------------------------------------------------- whitening


def test_whitening_kernel_whitens_patches():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    x = rng.normal(size=(40, 12, 12, 3)) @ mix  # correlated channels
    x = x + np.roll(x, 1, axis=2)  # correlated neighbours
    x = jnp.asarray(x, jnp.float32)
    eps = 5e-4
    kernel = abj.whitening_kernel(x, 2, eps)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    y = jax.lax.conv_general_dilated(
        x, kernel[..., :12], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    ).reshape(-1, 12)  # fmt: skip
    cov = np.asarray(y.T @ y) / y.shape[0]
    np.testing.assert_allclose(cov, np.diag(np.diag(cov)), atol=1e-4)  # uncorrelated
    variances = np.diag(cov)
    assert np.all(np.diff(variances) <= 1e-6)  # decreasing eigenvalues first
    assert variances[0] > 0.99 and variances[-1] > 0.5  # ~ lambda / (lambda + eps)

    ref = abt.whitening_filters(_nchw(x), 2, eps).numpy()  # (24, C, k, k)
    ours = np.asarray(kernel).transpose(3, 2, 0, 1)
    signs = np.sign((ref * ours).sum(axis=(1, 2, 3)))  # eigenvectors have arbitrary signs
    np.testing.assert_allclose(ours * signs[:, None, None, None], ref, atol=1e-3)


# ----------------------------------------------------------------------------- training


def _shared_start(recipe, data):
    """A PyTorch reference and a JAX bench starting from the same weights."""
    tb = abt.TorchAirbench(data["train"], data["test"], recipe, device="cpu", dtype=torch.float32)
    jb = abj.JaxAirbench(data["train"], data["test"], recipe, abj.JaxOptions(dtype="float32"))
    torch.manual_seed(0)
    net = tb.new_net()
    with torch.no_grad():
        net.whiten.weight.copy_(torch.randn(net.whiten.weight.shape) * 0.5)
    state = jax.jit(jb.init_state)(jb.key(0))
    template = {
        "params": abj.merge_params(state.trainable, state.frozen),
        "batch_stats": state.batch_stats,
    }
    variables = _torch_variables(net, template)
    trainable, frozen = abj.split_params(variables["params"])
    state = state._replace(
        trainable=trainable,
        frozen=frozen,
        batch_stats=variables["batch_stats"],
        opt_state=jb.tx.init(trainable),
        ema={"trainable": trainable, "batch_stats": variables["batch_stats"]},
    )
    return tb, net, jb, state, template


def test_sgd_steps_and_lookahead_match_torch():
    """Same weights, same batches: SGD groups, weight decay, Nesterov, schedule, label
    smoothing, whitening-bias freezing and the lookahead EMA agree with PyTorch's."""
    recipe = dataclasses.replace(
        TINY, train_epochs=2, ema_start_epochs=1, ema_every_n_steps=2, whiten_bias_epochs=1
    )
    data = abdata.synthetic_cifar10(24, 10)  # 3 steps per epoch, 6 in all
    tb, net, jb, state, template = _shared_start(recipe, data)
    optimizer, scheduler = abt.make_optimizer(net, recipe, tb.total_steps)
    step_fn = jax.jit(jb.train_step)
    x_all = abj.normalize(data["train"][0], jnp.float32)
    y_all = data["train"][1]
    lookahead, step = None, 0
    net.train()
    for epoch in range(2):
        net.whiten.bias.requires_grad = epoch < recipe.whiten_bias_epochs
        for i in range(3):
            x, y = x_all[8 * i : 8 * i + 8], y_all[8 * i : 8 * i + 8]
            tb.train_step(net, optimizer, scheduler, _nchw(x), torch.from_numpy(y).long())
            step += 1
            lookahead = tb.lookahead_step(net, lookahead, epoch, step)
            state, _ = step_fn(state, x, y, np.int32(epoch))
        if lookahead is not None:
            lookahead.update(net, 1.0)
        state = jb.end_epoch(state)
    assert int(state.step) == 6 and lookahead is not None
    ref = _torch_variables(net, template)
    ours = {
        "params": abj.merge_params(state.trainable, state.frozen),
        "batch_stats": state.batch_stats,
    }
    flat_ref = jax.tree_util.tree_flatten_with_path(ref)[0]
    flat_ours = jax.tree.leaves(ours)
    for (path, a), b in zip(flat_ref, flat_ours, strict=True):
        np.testing.assert_allclose(
            np.asarray(b), a, rtol=2e-4, atol=2e-5 * max(1.0, np.abs(a).max()), err_msg=str(path)
        )
    # Something did move, and the frozen tensors did not.
    start = _torch_variables(abt.AirbenchNet(recipe), template)
    assert not np.allclose(ours["params"]["head"]["kernel"], start["params"]["head"]["kernel"])
    np.testing.assert_array_equal(ours["params"]["group1"]["norm1"]["scale"], 1.0)


def test_short_runs_both_frameworks():
    """Both programs run end to end on a tiny random data set (3 steps)."""
    data = abdata.synthetic_cifar10(24, 20)
    recipe = dataclasses.replace(TINY, tta_level=0)  # TTA: test_tta_views_match_torch
    jb = abj.JaxAirbench(
        data["train"], data["test"], recipe, abj.JaxOptions(dtype="float32", loop="step")
    )
    tb = abt.TorchAirbench(data["train"], data["test"], recipe, device="cpu", dtype=torch.float32)
    for result in (jb.run(0), tb.run(0)):
        assert result["steps"] == 3
        assert 0.0 <= result["accuracy"] <= 1.0
        assert np.isfinite(result["train_loss"])
        assert result["time_s"] > 0 and len(result["epoch_times_s"]) == 1
    assert sum(jb.compile_times.values()) > 0


@pytest.mark.slow
def test_scan_loop_equals_step_loop():
    data = abdata.synthetic_cifar10(24, 20)
    recipe = dataclasses.replace(TINY, train_epochs=2, ema_start_epochs=1, ema_every_n_steps=2)
    results = []
    for loop in ("scan", "step"):
        jb = abj.JaxAirbench(
            data["train"], data["test"], recipe, abj.JaxOptions(dtype="float32", loop=loop)
        )
        results.append((jb.run(3), jb.last_state))
    (r1, s1), (r2, s2) = results
    assert r1["accuracy"] == r2["accuracy"]
    for a, b in zip(jax.tree.leaves(s1.trainable), jax.tree.leaves(s2.trainable), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_run_script_smoke(tmp_path):
    from benchmarks.airbench import run

    out = tmp_path / "r.json"
    result = run.main(
        [
            "--synthetic=64,20", "--seeds=2", "--batch_size=16", "--epochs=1",
            "--widths=8,16,16", "--whiten_samples=32", "--eval_batch_size=10",
            "--jax_loop=step", "--no_warmup", "--target=0.05", f"--out={out}",
            "--host_memory=calling_thread",
        ]
    )  # fmt: skip
    assert out.is_file()
    # Applied in each contestant's own (spawned) process, before JAX or PyTorch start.
    applied = "reuse, calling_thread" if GLIBC else "default (calling_thread not applied)"
    assert {c["host_memory"] for c in result["contestants"].values()} == {applied}
    for s in result["summary"].values():
        assert s["target"] == 0.05 and 0 <= s["seeds_at_target"] <= 2
    assert set(result["summary"]) == {
        "torch[eager,float32]",
        "jax[float32,pool=reshape,bn=cnn_jax,step]",
    }
    assert result["summary"]["jax[float32,pool=reshape,bn=cnn_jax,step]"]["n"] == 2


def test_host_memory_option_takes_either_spelling(capsys):
    from benchmarks.airbench import run

    for flag in ("--host_memory", "--host-memory"):
        assert run.parse_args([f"{flag}=calling_thread"]).host_memory == "calling_thread"
    assert run.parse_args([]).host_memory == "default"
    with pytest.raises(SystemExit):
        run.parse_args(["--host-memory=everything"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_summary_says_which_seeds_reached_the_target():
    from benchmarks.airbench import run

    runs = [
        {"accuracy": 0.905, "time_s": 100.0},
        {"accuracy": 0.898, "time_s": 110.0},
        {"accuracy": 0.903, "time_s": 90.0},
    ]
    s = run.summarize(runs, target=0.90)
    assert s["seeds_at_target"] == 2 and s["n"] == 3
    assert s["mean_at_target"]  # mean 0.902
    assert s["time_mean_s"] == pytest.approx(100.0)
    assert "2/3 seeds" in run.target_line(s) and "100.0s" in run.target_line(s)
    below = run.summarize(runs, target=0.904)
    assert below["seeds_at_target"] == 1 and not below["mean_at_target"]
    assert "did not" in run.target_line(below)
    assert "target" not in run.summarize(runs)


@pytest.mark.parametrize("target", [0.0, 90.0, -0.5])
def test_target_outside_zero_one_is_rejected(target):
    from benchmarks.airbench import run

    with pytest.raises(ValueError, match=r"`target` \(=" + re.escape(repr(target))):
        run.summarize([{"accuracy": 0.9, "time_s": 1.0}], target=target)
    with pytest.raises(ValueError, match=r"`--target`"):
        run.main(["--synthetic=64,20", f"--target={target}"])
    with pytest.raises(ValueError, match="`runs` is empty"):
        run.summarize([])


# --------------------------------------------------------------------------------- data


def _jpeg(color):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_load_cifar10_from_a_tarball_folder(tmp_path):
    pytest.importorskip("PIL")
    members = [
        ("train/cat/0000.jpg", _jpeg((200, 10, 10))),
        ("train/airplane/0000.jpg", _jpeg((10, 200, 10))),
        ("train/truck/0000.jpg", _jpeg((10, 10, 200))),
        ("test/dog/0000.jpg", _jpeg((100, 100, 100))),
        ("README", b"not an image"),
    ]
    _tarball(tmp_path / abdata.TARBALL, members)
    for where in (tmp_path, tmp_path / abdata.TARBALL):
        splits = abdata.load_cifar10(where)
        x, y = splits["train"]
        assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
        assert sorted(y.tolist()) == [0, 3, 9]
        cat = x[list(y).index(3)]
        assert cat[..., 0].mean() > 150 and cat[..., 1].mean() < 60
        assert splits["test"][1].tolist() == [5]
    with pytest.raises(FileNotFoundError, match="data_dir"):
        abdata.load_cifar10(tmp_path / "nowhere")


def test_load_cifar10_rejects_unsafe_members(tmp_path):
    from cnn_jax.data import UnsafeArchiveError

    _tarball(tmp_path / abdata.TARBALL, [("../train/cat/0000.jpg", _jpeg((0, 0, 0)))])
    with pytest.raises(UnsafeArchiveError):
        abdata.load_cifar10(tmp_path)
