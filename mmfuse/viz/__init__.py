"""Plotting layer of the evaluation report: figures (PNG), Lightning log reading, an HTML index page.

    series = read_lightning_logs(run_dir)
    plot_learning_curves(series, out / "curves.png", "easy-VQA, concat fusion")
    plot_type_accuracy({"overall": 91.2, "yes/no": 88.7}, out / "types.png", "Accuracy by answer type")
    write_index_html(out, "Evaluation", {"checkpoint": "best.ckpt"}, [("Curves", "curves.png", "...")])

Figures use :class:`matplotlib.figure.Figure` with the Agg renderer; no pyplot global state is touched.
"""

from mmfuse.viz.figures import (
    confusion_counts,
    plot_attention_grid,
    plot_confusion,
    plot_learning_curves,
    plot_type_accuracy,
    top_labels,
)
from mmfuse.viz.logs import read_lightning_logs
from mmfuse.viz.report import write_index_html

__all__ = [
    "confusion_counts", "plot_attention_grid", "plot_confusion", "plot_learning_curves", "plot_type_accuracy",
    "read_lightning_logs", "top_labels", "write_index_html",
]
