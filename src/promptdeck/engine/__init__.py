"""The invoke pipeline: resolve, validate, render, call a provider, record the run."""
