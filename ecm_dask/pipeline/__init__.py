"""Pipeline stages with Zarr checkpoints: ingest -> drift -> g2 -> fit -> maps/analysis -> report."""
