"""Fill the README's results table from the metrics JSON the notebooks wrote.

    python tools/update_readme.py           # rewrite the block between the results markers
    python tools/update_readme.py --check   # exit 1 if the README disagrees with the metrics
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def best_baseline_error(reg: dict) -> float:
    sim = reg["simulation"]
    return next(r["error_vs_truth"] for r in sim["methods"] if r["method"] == sim["best_baseline"])


def hw1_rows(m: dict) -> list[str]:
    reg, mlp, cnn = m["regression"], m["mlp"], m["cnn"]
    rows = [
        f"| HW1 regression network ensemble, {len(reg['family'])} simulated data sets | CV MSE "
        f"{reg['cv_mse']['mean']:.4f} ± {reg['cv_mse']['std']:.4f} | error vs truth "
        f"{reg['error_vs_truth']['mean']:.4f} ± {reg['error_vs_truth']['std']:.4f} "
        f"(best baseline, {reg['simulation']['best_baseline']}: {best_baseline_error(reg):.4f}) | — |",
        *([f"| HW1 regression network ensemble, course file | CV MSE "
           f"{next(r for r in reg['course']['methods'] if r['method'] == 'network')['cv_mse']:.4f} "
           f"| test MSE {reg['course']['test']['network ensemble']['test_mse']:.4f} | — |"] if "course" in reg else []),
        f"| HW1 FashionMNIST MLP {tuple(mlp['best_config']['hidden'])} | "
        + (f"val acc {pct(mlp['val_acc'])} (search " if "val_acc" in mlp else "")
        + f"CV acc {pct(mlp['cv_acc']['mean'])} ± {pct(mlp['cv_acc']['std'])}{')' if 'val_acc' in mlp else ''} "
        f"| test acc **{pct(mlp['test_acc'])}** | {mlp['samples_per_s']:,.0f} |",
        f"| HW1 FashionMNIST CNN {tuple(cnn['config']['channels'])}"
        + (f", {cnn['variant']}{' + flip TTA' if cnn['flip_tta'] else ''}" if "variant" in cnn else "")
        + f" | val acc {pct(cnn['val_acc'])}"
        + (f" (recipe CV acc {pct(m['cnn_cv']['rows'][0]['cv_acc'])} ± {pct(m['cnn_cv']['rows'][0]['cv_std'])})"
           if "cnn_cv" in m else "")
        + f" | test acc **{pct(cnn['test_acc'])}** | {cnn['samples_per_s']:,.0f} |",
    ]
    if "appendix" in m:  # metrics written before the appendices existed have no row for them
        b = m["appendix"]["B"]
        rows.append(f"| HW1 appendix B: NumPy-only MLP {tuple(b['config']['hidden'])} on {b['dataset']} "
                    f"| val acc {pct(b['val_acc'])} | test acc **{pct(b['test_acc'])}** | {b['samples_per_s']:,.0f} |")
    return rows


def hw2_rows(m: dict) -> list[str]:
    ae, ft, vae = m["final_ae"], m["finetune"], m["vae"]
    tuned = next(r for r in ft["all_labels"] if r["mode"] == "fine-tune")
    rows = [
        f"| HW2 conv. autoencoder, latent {ae['config']['latent']} | val MSE {ae['val_mse']:.5f}"
        + (f" ({ae['cv']['folds']}-fold CV {ae['cv']['mean']:.5f} ± {ae['cv']['std']:.5f})" if "cv" in ae else "")
        + f" | test MSE **{ae['test_mse']:.5f}** | {ae['samples_per_s']:,.0f} |",
        f"| HW2 fine-tuned encoder classifier | {ft['cv']['folds']}-fold CV acc {pct(ft['cv']['mean'])} "
        f"± {pct(ft['cv']['std'])} | test acc **{pct(ft['test_acc']['fine-tune'])}** | {tuned['samples_per_s']:,.0f} |",
        f"| HW2 VAE, latent {vae['config']['latent']} (−ELBO, nats per image) | val {vae['val']['neg_elbo']:.2f} "
        f"| test **{vae['test']['neg_elbo']:.2f}** | {vae['samples_per_s']:,.0f} |",
    ]
    if "cifar_ae" in m:  # section 7.4 runs only where CIFAR-10 was found
        c = m["cifar_ae"]
        by_method = {r["method"]: r for r in c["rows"]}
        rows.append(f"| HW2 conv. autoencoder on CIFAR-10, latent {c['config']['latent']} (PCA of that size: val MSE "
                    f"{by_method['CIFAR-10 PCA']['val_mse']:.5f}) | val MSE "
                    f"{by_method['CIFAR-10 autoencoder']['val_mse']:.5f} | test MSE **{c['test_mse']:.5f}** "
                    f"| {c['samples_per_s']:,.0f} |")
    return rows


def render() -> str:
    lines = [START, "| model | selection score (validation) | test | training samples/s |", "|---|---|---|---|"]
    metrics = {key: json.loads(path.read_text()) for key in ("hw1", "hw2")
               if (path := ROOT / "report" / f"{key}_metrics.json").exists()}  # each file read once
    times = []
    for key, rows in (("hw1", hw1_rows), ("hw2", hw2_rows)):
        if key not in metrics:
            continue
        m = metrics[key]
        lines += rows(m)
        times.append(f"{key.upper()} `{m['profile']}` run: {m['wall_time_s']['total'] / 60:.1f} min on "
                     f"{m['environment']['cpu_threads']} CPU threads ({m['environment']['device']}, "
                     f"torch {m['environment']['torch']})")
    lines += ["", *[f"- {t}" for t in times]]
    if "hw1" in metrics:  # the speed of the machine, so that times measured elsewhere can be compared
        gflops = metrics["hw1"]["appendix"]["F"]["matmul_gflops"]
        lines.append(f"- the machine of HW1's run multiplies float32 matrices at {gflops:.0f} GFLOP/s "
                     f"(appendix F); scale the times by your machine's speed")
    sizes = [sum(r["bytes"] for r in m.get("checkpoints", {}).values()) for m in metrics.values()]
    if sum(sizes):
        lines.append(f"- weights of the final models in `checkpoints/` (float16, what `verify` loads): "
                     f"{sum(sizes) / 1e6:.1f} MB")
    profile_times = ROOT / "report" / "profile_times.json"
    if profile_times.exists():
        for key, runs in sorted(json.loads(profile_times.read_text()).items()):
            measured = ", ".join(f"`{p}` {r['wall_s'] / 60:.1f} min ({r['cpu_threads']} thread"
                                 f"{'s' if r['cpu_threads'] != 1 else ''}, {r['date']})"
                                 for p, r in sorted(runs.items()))
            lines.append(f"- {key.upper()} smaller profiles, whole notebook with kernel start: {measured}")
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README}: the markers {START} / {END} are missing")
        return 1
    head, rest = text.split(START, 1)
    updated = head + render() + rest.split(END, 1)[1]
    if args.check:
        if updated != text:
            print("README results table is stale: run python tools/update_readme.py")
            return 1
        return 0
    README.write_text(updated)
    print("README results table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
