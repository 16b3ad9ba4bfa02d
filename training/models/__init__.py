"""Steering networks."""

from training.models.pilotnet import PilotNet, PilotNetConfig

__all__ = ["PilotNet", "PilotNetConfig"]
