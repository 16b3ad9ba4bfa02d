"""metasteer offline package: driving worlds, datasets, learned losses, meta-training, tuning, export.

Never imports rclpy; imports the runtime (``metasteer``) only for what the car runs too.
"""
