"""Self-contained HTML reports (plotly, offline) for audits and training runs."""
