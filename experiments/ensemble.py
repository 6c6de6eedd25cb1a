r"""Evaluates an ensemble of trained runs: members, voting, averaging, stacking, diversity.

Example (the members of a study):
  python -m experiments.ensemble --members='runs/study_cifar10_seeds/cells/*' \
      --out=runs/ensemble_seeds

``--members`` takes workdirs (comma-separated; shell-style patterns are expanded, in
sorted order) of any ``train_and_evaluate`` runs whose models have the same classes.
Writes ``ensemble.json`` (every number, and the accuracy of the first ``k`` members for
every ``k``), ``ensemble.md`` (a table) and ``ensemble.png`` (accuracy against the
ensemble's size) into ``--out``.
Weighted averaging and stacking are cross-fitted on two halves of the split
(``cnn_jax.ensemble.evaluate_ensemble``).

Boosting (SAMME by resampling, ``cnn_jax.ensemble.boost``) trains its members first:
  python -m experiments.ensemble --boost=experiments/configs/cifar10_small_cnn.py \
      --rounds=5 --out=runs/boost_cifar10

trains round ``r`` in ``<out>/round<r>`` (an interrupted run resumes; finished rounds
are kept), then reports the kept members like ``--members`` does, plus SAMME's own
vote (``argmax_k sum_m alpha_m [h_m(x) = k]``), each round's weighted training error
and ``alpha``. Config overrides: ``--boost.num_train_steps=...``.
"""

import glob
import json
import os

from absl import app, flags

import cnn_jax

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The command's flags, defined when it runs (importing the module defines none)."""
    from ml_collections import config_flags

    flags.DEFINE_list("members", None, "Member workdirs (patterns allowed).")
    config_flags.DEFINE_config_file(
        "boost", None, "Train a SAMME ensemble of this config (file[:variant]) first."
    )
    flags.DEFINE_integer("rounds", 5, "Boosting rounds (members) with --boost.")
    flags.DEFINE_string("out", None, "Where to write ensemble.json and ensemble.md.")
    flags.DEFINE_enum("split", "test", ["test", "train"], "The split to evaluate on.")
    flags.DEFINE_string("title", "Ensemble", "The table's title.")
    flags.mark_flags_as_required(["out"])


def expand(patterns: list[str]) -> list[str]:
    """Workdirs from paths and patterns, each pattern's matches sorted; no duplicates."""
    out: list[str] = []
    for p in patterns:
        for d in sorted(glob.glob(p)) if glob.has_magic(p) else [p]:
            if os.path.isdir(d) and d not in out:
                out.append(d)
    return out


def table(res: dict, title: str) -> str:
    """The markdown table of :func:`cnn_jax.ensemble.evaluate_ensemble`'s result."""
    lines = [f"# {title}", "", f"{res['num_examples']} examples.", "", "| | accuracy (%) |"]
    lines.append("|---|---|")
    for name, acc in res["members"].items():
        lines.append(f"| member {name} | {100 * acc:.2f} |")
    lines.append(f"| members' mean | {100 * res['member_mean']:.2f} |")
    keys = ["majority_vote", "probability_average", "weighted_average", "stacking"]
    for key in [*keys, "samme"] if "samme" in res else keys:
        lines.append(f"| **{key.replace('_', ' ')}** | {100 * res[key]:.2f} |")
    lines += ["", f"Mean pairwise disagreement: {100 * res['mean_disagreement']:.2f}%."]
    if "alphas" in res:
        lines += [
            "",
            "| SAMME round | weighted training error (%) | alpha |",
            "|---|---|---|",
        ]
        for r, (err, alpha) in enumerate(zip(res["errors"], res["alphas"], strict=True)):
            lines.append(f"| {r} | {100 * err:.2f} | {alpha:.4f} |")
    if res.get("stopped"):
        lines += ["", f"Boosting stopped early: {res['stopped']}"]
    return "\n".join(lines) + "\n"


def by_size(probs, labels, alphas=None) -> dict:
    """Accuracy of averaging and voting over the first ``k`` members, for every ``k``.

    Probability averaging and majority vote; with ``alphas``, also SAMME's weighted vote.
    """
    from cnn_jax import ensemble

    k_classes = probs.shape[-1]
    out = {"k": [], "probability_average": [], "majority_vote": []}
    if alphas is not None:
        out["samme"] = []
    for k in range(1, probs.shape[0] + 1):
        out["k"].append(k)
        out["probability_average"].append(
            ensemble.accuracy(ensemble.average_probabilities(probs[:k]), labels)
        )
        votes = probs[:k].argmax(-1)
        out["majority_vote"].append(
            ensemble.accuracy(ensemble.majority_vote(votes, k_classes), labels)
        )
        if alphas is not None:
            out["samme"].append(
                ensemble.accuracy(ensemble.samme_vote(votes, alphas[:k], k_classes), labels)
            )
    return out


def plot(res: dict, path: str, title: str) -> None:
    """Accuracy against the number of members (and each member's own)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sizes = res["by_size"]
    ax.plot(
        sizes["k"], [100 * a for a in sizes["probability_average"]], "o-", label="prob. average"
    )
    ax.plot(sizes["k"], [100 * a for a in sizes["majority_vote"]], "s--", label="majority vote")
    if "samme" in sizes:
        ax.plot(sizes["k"], [100 * a for a in sizes["samme"]], "^:", label="SAMME vote")
    accs = [100 * a for a in res["members"].values()]
    ax.plot(range(1, len(accs) + 1), accs, "k.", label="member k alone")
    ax.set_xlabel("members in the ensemble (first k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(sizes["k"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def report(
    dirs: list[str], out: str, title: str, split: str = "test", boosted: dict | None = None
) -> dict:
    """Evaluates the members in ``dirs`` and writes ``ensemble.{json,md,png}`` into ``out``.

    Args:
      dirs: the members' workdirs.
      out: the report's directory (created).
      title: the table's and the figure's title.
      split: ``'test'`` or ``'train'``.
      boosted: :func:`cnn_jax.ensemble.boost`'s result for these members (adds SAMME's
        vote, the rounds' errors and alphas).

    Returns:
      The evaluation (:func:`cnn_jax.ensemble.evaluate_ensemble`'s, plus ``workdirs``,
      ``by_size`` and, when boosted, ``samme``, ``alphas``, ``errors``).
    """
    from cnn_jax import ensemble

    members = [ensemble.load_member(d) for d in dirs]
    probs, labels = ensemble.stack_predictions(members, split)
    res = ensemble.evaluate_ensemble(probs, labels, [m.name for m in members])
    res["workdirs"] = list(dirs)
    alphas = None
    if boosted is not None:
        alphas = list(boosted["alphas"])
        if len(alphas) != len(dirs):
            raise ValueError(f"`boosted` has {len(alphas)} alphas for {len(dirs)} members")
        votes = probs.argmax(-1)
        res["samme"] = ensemble.accuracy(
            ensemble.samme_vote(votes, alphas, probs.shape[-1]), labels
        )
        res.update(alphas=alphas, errors=list(boosted["errors"]))
        if boosted.get("stopped"):
            res["stopped"] = boosted["stopped"]
    res["by_size"] = by_size(probs, labels, alphas)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "ensemble.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "ensemble.md"), "w") as f:
        f.write(table(res, title))
    plot(res, os.path.join(out, "ensemble.png"), title)
    return res


def main(argv: list[str]) -> None:
    """Trains the boosted members (with --boost), predicts, evaluates, writes the report."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if (FLAGS.members is None) == (FLAGS.boost is None):
        raise app.UsageError("give exactly one of --members and --boost")
    cnn_jax.apply_xla_cpu_defaults()
    from cnn_jax import ensemble

    boosted = None
    if FLAGS.boost is not None:
        boosted = ensemble.boost(FLAGS.boost, FLAGS.out, FLAGS.rounds)
        dirs = boosted["workdirs"]
        if not dirs:
            raise SystemExit(f"boosting kept no member: {boosted.get('stopped')}")
    else:
        dirs = expand(FLAGS.members)
        if not dirs:
            raise app.UsageError(f"--members (={FLAGS.members}) matches no directory")
    res = report(dirs, FLAGS.out, FLAGS.title, FLAGS.split, boosted)
    print(table(res, FLAGS.title))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
