"""Usage analytics: SQL aggregates (stats), the Overview's alerts (alerts), Plotly figures
(charts), the usage CSV (export)."""
