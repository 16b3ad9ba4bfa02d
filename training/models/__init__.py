"""Steering networks."""

from training.models.pilotnet import PilotNet, PilotNetConfig, penultimate_width

__all__ = ["PilotNet", "PilotNetConfig", "penultimate_width"]
