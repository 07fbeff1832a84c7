"""Self-contained HTML reports (plotly, offline) for audits and training runs: pages only. They read audit
results, run directories (trainer.run_dir), evaluation results and the diagnosis, never trainer internals."""
