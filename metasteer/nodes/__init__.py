"""ROS 2 nodes (the only modules that import rclpy): thin classes over ``metasteer``'s plain logic."""
