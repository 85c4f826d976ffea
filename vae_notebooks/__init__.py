"""A literate, notebook-first toolkit of variational autoencoders for scientific data

Modules:

- `vae_notebooks.magnetics.data`: Shots of multichannel magnetic diagnostics: reading them, preprocessing them into windows, and a simulator of tokamak-like magnetics with labelled anomalies.
- `vae_notebooks.magnetics.detector`: A VAE over sliding windows of the diagnostics, scored per time step, with calibrated thresholds, channel attributions and simple baselines, all with the scikit-learn / PyOD shape.
- `vae_notebooks.magnetics.quality`: Absent channels, outages and flat-lined (dead or stuck) sensors, found and reported as data-quality events, separately from plasma anomalies.
- `vae_notebooks.magnetics.train`: `train_magnetics(config)`: simulate (or read) shots, fit the VAE detectors and the baselines on normal shots, calibrate, and evaluate per time step, per anomaly kind and per event, offline (centred) and online (causal)."""

__version__ = "0.1.0"
