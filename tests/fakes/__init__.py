"""Labelled fakes, only at boundaries that cannot run on this machine (the CARLA server)."""
