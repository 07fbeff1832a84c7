"""The data pipeline: the dataset and its settings (dataset, config), augmentation, batching (collate), sampling,
the data loaders, batch drawings (plot_batch) and the image sources `doctor predict` reads (predict_source)."""
