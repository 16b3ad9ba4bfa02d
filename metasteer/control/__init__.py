"""Vehicle controllers shared by the ROS node and the offline evaluator."""

from metasteer.control.speed import SpeedController

__all__ = ["SpeedController"]
