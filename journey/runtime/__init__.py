"""What every stage runs on: files (`io`), provenance records and dataset cards, progress bars,
metrics, dataset importers and the Ray pool (`distributed`). Imports no stage and no config."""
