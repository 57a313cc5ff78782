"""Run directories on disk: config, environment, results, summary, load (see records.py); the
TensorBoard export of a sweep (see tensorboard.py)."""

from jaxlr._records.records import (
    CHECKPOINTS,
    CONFIG,
    ENVIRONMENT,
    FINDER,
    FINDER_PNG,
    RESULTS,
    SUMMARY,
    SWEEP_PNG,
    digest,
    environment,
    finder_summary,
    format_comparison,
    format_finder,
    format_recommendation,
    format_table,
    load,
    make_run_dir,
    package_version,
    plain,
    plot_finder_png,
    plot_sweep_png,
    quote,
    read_config,
    read_json,
    result_arrays,
    result_table,
    save,
    save_finder,
    summarize,
    write_json,
)
from jaxlr._records.tensorboard import (
    LiveTensorBoard,
    prepare_tensorboard_dir,
    write_tensorboard,
)

__all__ = ["CHECKPOINTS", "CONFIG", "ENVIRONMENT", "FINDER", "FINDER_PNG", "RESULTS", "SUMMARY",
           "SWEEP_PNG", "digest", "environment", "finder_summary", "format_finder",
           "format_comparison", "format_recommendation", "format_table", "load", "make_run_dir",
           "package_version",
           "plain", "plot_finder_png", "plot_sweep_png", "quote", "read_config", "read_json",
           "result_arrays", "result_table", "save", "save_finder", "summarize", "write_json",
           "prepare_tensorboard_dir", "write_tensorboard", "LiveTensorBoard"]
