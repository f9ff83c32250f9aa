"""Figures drawn from numbers recorded in the notebooks' text (seeded runs whose cells print them), for chapters whose
code cells are not the place for them. Each figure says where its numbers come from.

    python tools/recorded_figures.py      # writes nbs/images/*.png
"""
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parents[1] / 'nbs' / 'images'

# 06_compression, "Measured (seeded run of the cell below, 64 antithetic pairs)": the ratio of the Monte-Carlo adaptive
# sharpness to its second-order form, mean ± standard error, at each rho
RHO = [0.3, 0.1, 0.03, 0.01, 0.003]
RELU = [(44.9, 4.6), (2.83, 0.43), (1.15, 0.06), (1.08, 0.05), (1.18, 0.06)]
TANH = [(0.99, 0.05)] * 5


def adaptive_sharpness_ratio(path=OUT / 'adaptive_sharpness_ratio.png'):
    fig, ax = plt.subplots(figsize=(6, 4))
    for rows, label, c in [(RELU, 'ReLU classifier', '#e76f51'), (TANH, 'tanh net', '#2962ff')]:
        ax.errorbar(RHO, [m for m, _ in rows], yerr=[s for _, s in rows], marker='o', capsize=3, label=label, color=c)
    ax.axhline(1, color='0.4', lw=1, ls='--')
    ax.set(xscale='log', yscale='log')
    ax.set_xlabel(r'perturbation scale $\rho$ (log scale)', fontsize=11)
    ax.set_ylabel('Monte-Carlo / second-order form', fontsize=11)
    ax.set_title('Adaptive sharpness against its second-order form', fontsize=11)
    ax.tick_params(labelsize=10); ax.legend(fontsize=10)
    fig.tight_layout(); OUT.mkdir(exist_ok=True); fig.savefig(path, dpi=100)
    return path


if __name__ == '__main__':
    print(adaptive_sharpness_ratio())
