"""The steering node beside CARLA's native ROS 2 interface (server started with --ros2; no ros-bridge).

Topic names, and what the native interface does not publish (speedometer, collisions), are in
config/carla_native_ros2.yaml. Needs carla_msgs (ros2_ws/src/carla_msgs or the ros-carla-msgs package).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("metasteer")
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value=os.path.join(share, "models", "learned.onnx")),
        Node(package="metasteer", executable="steering_node", name="metasteer_steering", output="screen",
             parameters=[os.path.join(share, "config", "carla_native_ros2.yaml"), {"model_path": LaunchConfiguration("model_path")}]),
    ])
