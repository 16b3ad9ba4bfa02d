"""Driving worlds behind one interface: ``embedded`` (runs here) and ``carla`` (needs a server)."""

from simulator.base import FIXED_DELTA_S, CameraSpec, Observation, SceneFeatures, VehicleControl, World, pilotnet_camera

__all__ = ["FIXED_DELTA_S", "CameraSpec", "Observation", "SceneFeatures", "VehicleControl", "World", "pilotnet_camera"]
