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
"""

import glob
import json
import os

from absl import app, flags

import cnn_jax

FLAGS = flags.FLAGS
flags.DEFINE_list("members", None, "Member workdirs (patterns allowed).")
flags.DEFINE_string("out", None, "Where to write ensemble.json and ensemble.md.")
flags.DEFINE_enum("split", "test", ["test", "train"], "The split to evaluate on.")
flags.DEFINE_string("title", "Ensemble", "The table's title.")
flags.mark_flags_as_required(["members", "out"])


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
    for key in ("majority_vote", "probability_average", "weighted_average", "stacking"):
        lines.append(f"| **{key.replace('_', ' ')}** | {100 * res[key]:.2f} |")
    lines += ["", f"Mean pairwise disagreement: {100 * res['mean_disagreement']:.2f}%."]
    return "\n".join(lines) + "\n"


def by_size(probs, labels) -> dict:
    """Accuracy of probability averaging and majority vote over the first ``k`` members."""
    from cnn_jax import ensemble

    k_classes = probs.shape[-1]
    out = {"k": [], "probability_average": [], "majority_vote": []}
    for k in range(1, probs.shape[0] + 1):
        out["k"].append(k)
        out["probability_average"].append(
            ensemble.accuracy(ensemble.average_probabilities(probs[:k]), labels)
        )
        votes = probs[:k].argmax(-1)
        out["majority_vote"].append(
            ensemble.accuracy(ensemble.majority_vote(votes, k_classes), labels)
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


def main(argv: list[str]) -> None:
    """Loads the members, predicts, evaluates, writes the report."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cnn_jax.apply_xla_cpu_defaults()
    from cnn_jax import ensemble

    dirs = expand(FLAGS.members)
    if not dirs:
        raise app.UsageError(f"--members (={FLAGS.members}) matches no directory")
    members = [ensemble.load_member(d) for d in dirs]
    probs, labels = ensemble.stack_predictions(members, FLAGS.split)
    res = ensemble.evaluate_ensemble(probs, labels, [m.name for m in members])
    res["workdirs"] = dirs
    res["by_size"] = by_size(probs, labels)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "ensemble.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = table(res, FLAGS.title)
    with open(os.path.join(FLAGS.out, "ensemble.md"), "w") as f:
        f.write(text)
    plot(res, os.path.join(FLAGS.out, "ensemble.png"), FLAGS.title)
    print(text)


if __name__ == "__main__":
    app.run(main)
