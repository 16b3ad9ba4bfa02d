"""Bayesian optimisation (BoTorch) of a loss's hyperparameters against closed-loop metrics."""
