"""metasteer runtime: what a car needs to steer from a camera (numpy, opencv, onnxruntime, rclpy only).

Nothing here imports torch or the offline ``training`` package.
"""

__version__ = "0.1.0"
